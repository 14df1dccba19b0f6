"""Questions asked of networks: a ``leo.core.spec.Query`` answered by ``check.check_query``."""
