"""Which units are stably active or inactive over the box: stages, engines, provers, report."""
