"""m365sync: keeps Microsoft 365 mail and calendars in step with a CRM.

The CRM is Odoo (through its external API) or the embedded SQLite store.
"""

__version__ = "0.1.0"
