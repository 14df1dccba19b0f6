"""From a stability report to a smaller network computing the same function: the forms."""
