"""The certificate a compression writes, and the independent audit that re-checks it."""
