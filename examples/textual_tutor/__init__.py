"""A terminal fractions lesson in Textual, tracked with ``timeback_client.integrations.textual``."""
