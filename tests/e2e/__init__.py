"""End to end: the emulator, the daemon, and a live Odoo with the addon (skipped without one)."""
