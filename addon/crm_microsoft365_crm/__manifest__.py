{
    "name": "Microsoft 365 for Odoo CRM: Opportunities",
    "summary": "Outlook mail threads and meetings on the opportunity, last email and next meeting in the pipeline",
    "version": "18.0.1.0.0",
    "category": "Sales/CRM",
    "license": "LGPL-3",
    "author": "Microsoft 365 for Odoo CRM contributors",
    "website": "https://github.com/m365sync/m365sync",
    "depends": ["crm_microsoft365", "crm"],
    "data": [
        "security/ir.model.access.csv",
        "wizards/m365_thread_link_wizard_views.xml",
        "wizards/m365_wizard_views.xml",
        "views/crm_lead_views.xml",
        "views/m365_mail_thread_views.xml",
    ],
    "assets": {
        "web.assets_tests": [
            "crm_microsoft365_crm/static/tests/tours/*.js",
        ],
    },
    "auto_install": True,
    "development_status": "Alpha",
}
