"""The cloud server the bot runs on: the ServerProvider protocol (base), one adapter per cloud
(Hetzner, DigitalOcean, Scaleway, OVHcloud), and the in-memory fake (memory)."""
