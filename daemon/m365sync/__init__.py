"""m365sync: keeps Microsoft 365 mail and calendars in step with a CRM (Odoo or the embedded store)."""

__version__ = "0.1.0"
