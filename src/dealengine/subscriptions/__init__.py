"""Durable subscriptions: named subscribers with a tracked position, and the signed webhooks
built on them."""
