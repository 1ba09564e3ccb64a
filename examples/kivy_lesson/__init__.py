"""A touch lesson in Kivy, tracked with ``timeback_client.integrations.kivy``."""
