import { registry } from "@web/core/registry";

// A salesperson opens an opportunity: the Emails button counts the customer's mail, the Emails
// tab lists the thread, and the thread opens readable.
registry.category("web_tour.tours").add("crm_microsoft365_crm_emails", {
    steps: () => [
        {
            content: "The smart button counts the customer's mail",
            trigger: ".o_form_view .oe_stat_button.o_m365_emails_button .o_stat_value:contains(1)",
        },
        {
            content: "Open the Emails tab",
            trigger: ".o_form_view .o_notebook .nav-link:contains(Emails)",
            run: "click",
        },
        {
            content: "The customer's thread is listed",
            trigger: ".o_field_widget[name=m365_thread_ids] .o_data_row:contains(Pricing for 40 seats) td[name=subject]",
            run: "click",
        },
        {
            content: "The thread opens readable: its message's body",
            trigger: ".modal .o_kanban_record:contains(Could you send us a quote?)",
        },
        {
            content: "... and its sender",
            trigger: ".modal .o_kanban_record:contains(ann@tour-globex.example)",
        },
    ],
});
