from odoo.tests import HttpCase, tagged


@tagged("post_install", "-at_install")
class TestSettingsPage(HttpCase):
    def test_app_values_are_read_in_full(self):
        """Settings > Microsoft 365: client id, tenant and redirect URI are not cut off, and the
        redirect URI has a copy button (issue #15)."""
        params = self.env["ir.config_parameter"].sudo()
        params.set_param("crm_microsoft365.client_id", "3fa85f64-5717-4562-b3fc-2c963f66afa6")
        params.set_param("crm_microsoft365.tenant", "72f988bf-86f1-41af-91ab-2d7cd011db47")
        self.start_tour(
            "/odoo/action-crm_microsoft365.res_config_settings_action",
            "crm_microsoft365_settings",
            login="admin",
        )
