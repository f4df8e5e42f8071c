import { registry } from "@web/core/registry";

// Odoo's meeting button on the opportunity opens Schedule Meeting with the customer and the
// opportunity; the meeting booked is listed in the Meetings tab (the test checks opportunity_id).
registry.category("web_tour.tours").add("crm_microsoft365_crm_schedule", {
    steps: () => [
        {
            content: "Odoo's meeting button",
            trigger: ".o_form_view button.oe_stat_button[name=action_schedule_meeting]",
            run: "click",
        },
        {
            content: "Schedule Meeting, with the opportunity's contact",
            trigger: ".modal .o_field_widget[name=partner_id] input:value(Tour Ann)",
        },
        {
            content: "... and the opportunity",
            trigger: ".modal .o_field_widget[name=opportunity_id] input:value(Globex rollout)",
        },
        {
            content: "... titled after it",
            trigger: ".modal .o_field_widget[name=subject] input:value(Globex rollout)",
        },
        {
            content: "Schedule",
            trigger: ".modal .modal-footer button[name=action_confirm]",
            run: "click",
        },
        {
            content: "Booked",
            trigger: ".o_notification:contains(Meeting scheduled)",
        },
        {
            content: "The dialog closed",
            trigger: "body:not(:has(.modal .o_field_widget[name=opportunity_id]))",
        },
        {
            content: "Open the Meetings tab",
            trigger: ".o_form_view .o_notebook .nav-link:contains(Meetings)",
            run: "click",
        },
        {
            content: "The meeting is on the opportunity",
            trigger: ".o_field_widget[name=calendar_event_ids] .o_data_row:contains(Globex rollout)",
        },
    ],
});
