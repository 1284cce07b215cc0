"""Helpers shared by the test layers: a real redis-server, and polling instead of sleeping."""
