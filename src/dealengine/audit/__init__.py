"""Audit: replay any lead or deal at any moment, corrections, tamper evidence, reports."""
