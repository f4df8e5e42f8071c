{
    "name": "Microsoft 365 for Odoo CRM",
    "summary": "Outlook mail threads and Microsoft calendars on your contacts, "
    "kept in sync by the m365sync daemon",
    "version": "18.0.0.1.0",
    "category": "Sales/CRM",
    "license": "LGPL-3",
    "author": "Microsoft 365 for Odoo CRM contributors",
    "website": "https://github.com/m365sync/m365sync",
    "depends": ["contacts", "mail", "calendar"],
    "external_dependencies": {"python": []},
    "data": [
        "security/ir.model.access.csv",
    ],
    "development_status": "Alpha",
    "installable": True,
    "application": False,
}
