import { registry } from "@web/core/registry";

// From a contact's email thread, Create Opportunity: the new opportunity is prefilled with the
// thread's subject and external contact, and saved with the thread linked.
registry.category("web_tour.tours").add("crm_microsoft365_crm_create_from_thread", {
    steps: () => [
        {
            content: "Open the contact's Emails tab",
            trigger: ".o_form_view .o_notebook .nav-link:contains(Emails)",
            run: "click",
        },
        {
            content: "Open the thread",
            trigger: ".o_field_widget[name=m365_thread_ids] .o_data_row:contains(Pricing for 40 seats) td[name=subject]",
            run: "click",
        },
        {
            content: "Create Opportunity from the thread",
            trigger: ".modal button.o_m365_create_opportunity",
            run: "click",
        },
        {
            content: "The opportunity is named after the thread",
            trigger: ".o_form_view .o_field_widget[name=name] textarea:value(Pricing for 40 seats)",
        },
        {
            content: "... for its external contact",
            trigger: ".o_form_view .o_field_widget[name=partner_id] input:value(Tour Ann)",
        },
        {
            content: "Save",
            trigger: ".o_form_view .o_form_button_save",
            run: "click",
        },
        {
            content: "Saved, with the thread in its Emails tab",
            trigger: ".o_form_view .oe_stat_button.o_m365_emails_button .o_stat_value:contains(1)",
        },
    ],
});
