"""Logistics: shipping paid orders with a carrier, tracking, fulfilment status, delivery windows."""
