"""Order events: merchants' webhook endpoints, the events of their orders (an outbox written
with each state change), and their signed delivery with retries."""
