"""The engine's core: the one query type every question is asked in (``leo.core.spec``) and
several networks as one (``leo.core.product``)."""
