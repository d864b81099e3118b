"""Reliability and security: hostile configs, hostile servers, secrets that must not leak."""
