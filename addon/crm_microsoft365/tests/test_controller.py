import base64
import hashlib
import json
from urllib.parse import parse_qs, urlsplit

from jwcrypto import jwe, jwk
from odoo.tests import HttpCase, new_test_user, tagged

from .common import microsoft_answers


@tagged("post_install", "-at_install")
class TestOAuthController(HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.user = new_test_user(cls.env, login="m365-ctl", groups="base.group_user")
        daemon = new_test_user(
            cls.env, login="m365-ctl-daemon", groups="base.group_user,crm_microsoft365.group_m365_daemon"
        )
        cls.old_key = jwk.JWK.generate(kty="EC", crv="P-256", kid="20250101-old", alg="ECDH-ES+A256KW", use="enc")
        cls.key = jwk.JWK.generate(kty="EC", crv="P-256", kid="20250301-new", alg="ECDH-ES+A256KW", use="enc")
        jwks = {"keys": [k.export_public(as_dict=True) for k in (cls.old_key, cls.key)]}
        cls.env["m365.daemon.api"].with_user(daemon).publish_daemon_info(
            {"info": {"jwks": jwks, "kid": "20250301-new", "version": "test"}}
        )
        params = cls.env["ir.config_parameter"].sudo()
        params.set_param("crm_microsoft365.client_id", "11111111-2222-3333-4444-555555555555")
        params.set_param("crm_microsoft365.tenant", "contoso.example")
        params.set_param("crm_microsoft365.authority_host", "https://login.example")

    def start(self):
        response = self.url_open("/m365/connect", allow_redirects=False)
        self.assertIn(response.status_code, (302, 303))
        target = urlsplit(response.headers["Location"])
        self.assertEqual(
            f"{target.scheme}://{target.netloc}{target.path}",
            "https://login.example/contoso.example/oauth2/v2.0/authorize",
        )
        return {k: v[0] for k, v in parse_qs(target.query).items()}

    def callback(self, **fields):
        return microsoft_answers(self, **fields)

    def requests(self):
        return self.env["m365.connect.request"].search([("user_id", "=", self.user.id)])

    def test_authorization_request(self):
        self.authenticate("m365-ctl", "m365-ctl")
        query = self.start()
        self.assertEqual(query["response_mode"], "form_post")
        self.assertEqual(query["response_type"], "code")
        self.assertEqual(query["prompt"], "select_account")
        self.assertEqual(query["code_challenge_method"], "S256")
        self.assertEqual(
            query["scope"],
            "openid profile email offline_access User.Read Mail.Read Mail.Send Calendars.ReadWrite",
        )
        self.assertTrue(query["redirect_uri"].endswith("/auth/microsoft-apis/get-access-token"))
        self.assertGreaterEqual(len(query["state"]), 32)

    def test_callback_checks_state_once_and_seals_to_the_newest_key(self):
        self.authenticate("m365-ctl", "m365-ctl")
        query = self.start()
        forged = self.callback(state="forged", code="abc")
        self.assertEqual(forged.status_code, 400)
        self.assertFalse(self.requests())
        ok = self.callback(state=query["state"], code="the-code")
        self.assertEqual(ok.status_code, 200, ok.text)
        self.assertIn("Connecting", ok.text)
        self.assertIn("Back to Microsoft 365 Accounts", ok.text)
        request = self.requests()
        self.assertEqual(len(request), 1)
        self.assertEqual(request.state, "pending")
        sealed = request.sudo().sealed
        token = jwe.JWE()
        token.deserialize(sealed, key=self.key)
        header = json.loads(token.objects["protected"])
        header.pop("epk")  # the ephemeral public key ECDH-ES adds
        self.assertEqual(
            header,
            {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "kid": "20250301-new", "purpose": "authorization-code"},
        )
        payload = json.loads(token.payload)
        self.assertEqual(payload["code"], "the-code")
        self.assertEqual(payload["redirect_uri"], query["redirect_uri"])
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(payload["code_verifier"].encode()).digest()
        ).rstrip(b"=").decode()
        self.assertEqual(challenge, query["code_challenge"])
        with self.assertRaises(jwe.InvalidJWEData):  # not sealed to the old key
            jwe.JWE().deserialize(sealed, key=self.old_key)
        replay = self.callback(state=query["state"], code="the-code")
        self.assertEqual(replay.status_code, 400)
        self.assertEqual(len(self.requests()), 1)

    def test_errors_say_what_to_do(self):
        self.authenticate("m365-ctl", "m365-ctl")
        cases = {
            ("access_denied", "AADSTS65004: User declined to consent"): "Consent refused",
            ("invalid_request", "AADSTS50011: The redirect URI does not match"): "redirect URI",
            ("consent_required", "AADSTS90094: needs admin approval"): "Administrator approval needed",
            ("invalid_client", "AADSTS7000215: Invalid client secret"): "Bad client credentials",
            ("invalid_scope", "AADSTS650053: scope not configured"): "Missing permissions",
        }
        for (error, description), words in cases.items():
            query = self.start()
            page = self.callback(state=query["state"], error=error, error_description=description)
            self.assertEqual(page.status_code, 400)
            self.assertIn(words, page.text)
        self.assertFalse(self.requests())

    def test_daemon_never_reported(self):
        self.env["ir.config_parameter"].sudo().set_param("crm_microsoft365.daemon_info", False)
        self.authenticate("m365-ctl", "m365-ctl")
        page = self.url_open("/m365/connect", allow_redirects=False)
        self.assertEqual(page.status_code, 503)
        self.assertIn("daemon is not running", page.text)

    def test_the_result_page_is_in_odoos_sign_in_layout_with_the_way_back(self):
        """#15: the callback's result (success, error, refused) is a page of Odoo's own layout
        (web.login_layout: the company's logo), with a title, what to do, and a link back."""
        self.authenticate("m365-ctl", "m365-ctl")
        query = self.start()
        ok = self.callback(state=query["state"], code="the-code")
        query = self.start()
        refused = self.callback(state=query["state"], error="access_denied", error_description="AADSTS65004: no")
        for page, words in ((ok, "Microsoft accepted the sign-in"), (refused, "Consent refused")):
            self.assertIn("/web/binary/company_logo", page.text)  # Odoo's sign-in layout
            self.assertIn("o_m365_connect_result", page.text)
            self.assertIn(words, page.text)
            self.assertIn('href="/odoo/action-', page.text)
            self.assertIn("Back to Microsoft 365 Accounts", page.text)
        self.assertIn('href="/m365/connect"', refused.text)  # Try again, after a failure
        self.assertNotIn('href="/m365/connect"', ok.text)
