import { registry } from "@web/core/registry";

// An account owner opens the Mail Folders tab, switches to chosen folders, ticks a folder
// filed under the Inbox and saves (the test then checks what the daemon is handed).
registry.category("web_tour.tours").add("crm_microsoft365_folder_choice", {
    steps: () => [
        {
            content: "Open the Mail Folders tab",
            trigger: ".o_notebook .nav-link:contains(Mail Folders)",
            run: "click",
        },
        {
            content: "Inbox and Sent Items are synced by default",
            trigger: ".o_field_widget[name=mail_folder_choice] input[data-value=inbox_sent]:checked",
        },
        {
            content: "The tree shows a folder filed under the Inbox, indented",
            trigger: ".o_field_widget[name=mail_folder_ids] td[name=indented_name]:contains(Key accounts)",
        },
        {
            content: "Choose the folders",
            trigger: ".o_field_widget[name=mail_folder_choice] input[data-value=chosen]",
            run: "click",
        },
        {
            content: "Tick Key accounts",
            trigger: ".o_field_widget[name=mail_folder_ids] tr:has(td[name=indented_name]:contains(Key accounts)) .o_field_boolean_toggle input",
            run: "click",
        },
        {
            content: "Save",
            trigger: ".o_form_button_save",
            run: "click",
        },
        {
            content: "Saved",
            trigger: ".o_form_saved",
        },
    ],
});
