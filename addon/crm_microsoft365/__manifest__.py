{
    "name": "Microsoft 365 for Odoo CRM",
    "summary": "Outlook mail threads and Microsoft calendars on your contacts, "
    "kept in sync by the m365sync daemon",
    "version": "18.0.0.2.0",
    "category": "Sales/CRM",
    "license": "LGPL-3",
    "author": "Microsoft 365 for Odoo CRM contributors",
    "website": "https://github.com/m365sync/m365sync",
    "depends": ["contacts", "mail", "calendar"],
    "external_dependencies": {"python": ["jwcrypto"]},
    "data": [
        "security/security.xml",
        "security/ir.model.access.csv",
        "data/res_users_data.xml",
        "views/m365_account_views.xml",
        "views/m365_sync_run_views.xml",
        "views/m365_mail_thread_views.xml",
        "views/m365_outbox_views.xml",
        "views/res_partner_views.xml",
        "views/res_config_settings_views.xml",
        "views/templates.xml",
        "views/menus.xml",
    ],
    "assets": {
        "web.assets_backend": [
            "crm_microsoft365/static/src/scss/m365_mail.scss",
        ],
        "web.assets_tests": [
            "crm_microsoft365/static/tests/tours/*.js",
        ],
    },
    "development_status": "Alpha",
}
