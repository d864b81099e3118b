"""The cloud side: HTTP transport, the Image API client, Keystone tokens, sessions."""
