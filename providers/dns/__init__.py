"""DNS providers: Cloudflare (the official SDK), RFC 2136 dynamic updates (dnspython), and an
in-memory fake. The adapters import their SDK only when they are built, so a bot without DNS
configured imports neither."""
