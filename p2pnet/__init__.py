"""The peer-to-peer layer: identities, Noise-secured connections, framing, request/response, gossip, discovery."""
