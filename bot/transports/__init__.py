"""Transports turn chat updates into Commands and Presses, and render Replies."""
