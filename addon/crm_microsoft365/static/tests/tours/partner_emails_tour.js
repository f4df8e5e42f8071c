import { registry } from "@web/core/registry";

registry.category("web_tour.tours").add("crm_microsoft365_partner_emails", {
    steps: () => [
        {
            content: "The smart button counts the mail",
            trigger: ".o_form_view .oe_stat_button:contains(Emails) .o_stat_value:contains(1)",
        },
        {
            content: "Open the Emails tab",
            trigger: ".o_form_view .o_notebook .nav-link:contains(Emails)",
            run: "click",
        },
        {
            content: "The thread is listed",
            trigger: ".o_field_widget[name=m365_thread_ids] .o_data_row:contains(Quarterly figures) td[name=subject]",
            run: "click",
        },
        {
            content: "The thread opens readable: its message's body",
            trigger: ".modal .o_kanban_record:contains(Hello from Alice)",
        },
        {
            content: "... sender and recipients",
            trigger: ".modal .o_kanban_record:contains(alice@example.com):contains(ann@tour-acme.example)",
        },
    ],
});
