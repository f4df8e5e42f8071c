import { registry } from "@web/core/registry";

// A user opens a contact, clicks Compose Email, writes and sends: the mail is queued in the
// outbox (the test checks the row) and a notification says Outlook sends it within seconds.
registry.category("web_tour.tours").add("crm_microsoft365_compose_email", {
    steps: () => [
        {
            content: "Compose Email on the contact",
            trigger: ".o_form_view .o_form_statusbar button.o_m365_compose",
            run: "click",
        },
        {
            content: "The contact is the recipient, as a tag",
            trigger: ".modal .o_field_widget[name=recipient_ids] .o_tag:contains(Tour Ann)",
        },
        {
            content: "Type a new address in To",
            trigger: ".modal .o_field_widget[name=recipient_ids] input",
            run: "edit Bo Buyer <bo@tour-acme.example>",
        },
        {
            content: "Create it as a contact",
            trigger: ".o-autocomplete--dropdown-menu .o_m2o_dropdown_option_create a",
            run: "click",
        },
        {
            content: "Both are recipients",
            trigger: ".modal .o_field_widget[name=recipient_ids] .o_tag:contains(Bo Buyer)",
        },
        {
            content: "Sent from the user's own mailbox",
            trigger: ".modal .o_field_widget[name=account_id] input:value(@contoso.example)",
        },
        {
            content: "A copy to a colleague",
            trigger: ".modal .o_field_widget[name=email_cc] input",
            run: "edit colleague@contoso.example",
        },
        {
            content: "Subject",
            trigger: ".modal .o_field_widget[name=subject] input",
            run: "edit Tour offer",
        },
        {
            content: "Message",
            trigger: ".modal .o_field_widget[name=body_html] .odoo-editor-editable p",
            run: "editor Hello Ann, here is our offer.",
        },
        {
            content: "Send",
            trigger: ".modal .modal-footer button[name=action_send]",
            run: "click",
        },
        {
            content: "The notification says it is queued",
            trigger: ".o_notification:contains(queued; sent through Outlook within seconds)",
        },
        {
            content: "The dialog closed",
            trigger: "body:not(:has(.modal .o_field_widget[name=recipient_ids]))",
        },
    ],
});
