import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";
import { standardFieldProps } from "@web/views/fields/standard_field_props";
import { Component, onWillDestroy, useEffect, xml } from "@odoo/owl";

const EVERY_MS = 2500;
const GIVE_UP_MS = 120000;

/**
 * Schedule Meeting: while the daemon is asking Outlook for the attendees' free/busy, show
 * "asking Outlook…" and look every few seconds whether the answer came; when it did, bump the
 * field (an integer the availability depends on) so the form recomputes and shows it.
 */
export class M365FreeBusyPoll extends Component {
    static template = xml`
        <span t-if="props.record.data.free_busy_state === 'pending'" class="small text-muted o_m365_free_busy_poll">
            <i class="fa fa-circle-o-notch fa-spin me-1" title="Waiting"/>asking Outlook… the daemon answers within seconds
        </span>`;
    static props = { ...standardFieldProps };

    setup() {
        this.orm = useService("orm");
        this.timer = null;
        useEffect(
            (state, request) => {
                this.stop();
                if (state === "pending" && request) {
                    this.start(request);
                }
            },
            () => [this.props.record.data.free_busy_state, this.requestId]
        );
        onWillDestroy(() => this.stop());
    }

    get requestId() {
        const value = this.props.record.data.free_busy_request_id;
        return (value && (value.id || value[0])) || false;
    }

    start(requestId) {
        const began = Date.now();
        this.timer = setInterval(async () => {
            if (Date.now() - began > GIVE_UP_MS) {
                return this.stop();
            }
            const [request] = await this.orm.read("m365.free.busy.request", [requestId], ["state"]);
            if (request && request.state !== "pending" && this.requestId === requestId) {
                this.stop();
                const tick = this.props.record.data[this.props.name] || 0;
                await this.props.record.update({ [this.props.name]: tick + 1 });
            }
        }, EVERY_MS);
    }

    stop() {
        if (this.timer) {
            clearInterval(this.timer);
            this.timer = null;
        }
    }
}

registry.category("fields").add("m365_free_busy_poll", {
    component: M365FreeBusyPoll,
    supportedTypes: ["integer"],
});
