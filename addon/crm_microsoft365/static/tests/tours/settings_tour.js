import { registry } from "@web/core/registry";

// An administrator reads the Azure app's values in full and copies the redirect URI.
function readInFull(element, what) {
    if (element.scrollWidth > element.clientWidth + 1) {
        throw new Error(`${what} is cut off: ${element.scrollWidth}px of text in ${element.clientWidth}px`);
    }
}

registry.category("web_tour.tours").add("crm_microsoft365_settings", {
    steps: () => [
        {
            content: "The client id is shown in full",
            trigger: "#m365_app_ids .o_field_widget[name=m365_client_id] input:value(3fa85f64-5717-4562-b3fc-2c963f66afa6)",
            run() {
                readInFull(this.anchor, "The client id");
            },
        },
        {
            content: "The tenant is shown in full",
            trigger: "#m365_app_ids .o_field_widget[name=m365_tenant] input:value(72f988bf-86f1-41af-91ab-2d7cd011db47)",
            run() {
                readInFull(this.anchor, "The tenant");
            },
        },
        {
            content: "The redirect URI is shown in full",
            trigger: "#m365_redirect .o_field_CopyClipboardChar span:contains(/auth/microsoft-apis/get-access-token)",
            run() {
                readInFull(this.anchor, "The redirect URI");
            },
        },
        {
            content: "... with a copy button",
            trigger: "#m365_redirect .o_field_CopyClipboardChar button.o_clipboard_button",
        },
    ],
});
