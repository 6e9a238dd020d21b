"""The command core every transport feeds: contracts, registry, access, confirmations, jobs."""
