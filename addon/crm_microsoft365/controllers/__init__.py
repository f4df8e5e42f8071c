# Filled in by the Odoo addon issue (see readme/ROADMAP.md).
