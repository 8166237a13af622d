"""Simulated devices: ``demo`` runs the README's three devices; the fleet simulator comes next."""
