"""A small fractions game in pygame, tracked with ``timeback_client.integrations.pygame``."""
