/*
 * welcome-email-c: sends a welcome email when a user is created.
 *
 * The C twin of the Rust `welcome-email` plugin, with the same contract: it serves queue
 * `emails` for `user.created`, reads the sender from config `from`, fails for good on a
 * payload without an `email` field, and on success publishes a follow-up `email.sent`.
 *
 * Memory, as wit-bindgen's C bindings define it: the delivery passed in belongs to us (freed
 * at the end of `handle`); strings returned to the host are heap copies that the generated
 * post-return code frees; strings passed to host functions are only borrowed; strings the
 * host returns belong to us.
 */
#include <stdlib.h>
#include <string.h>

#include "courier_json.h"
#include "handler_plugin.h"

#define DEFAULT_FROM "no-reply@example.com"

typedef exports_courier_plugin_handler_outcome_t outcome_t;

static void outcome_fatal(outcome_t *ret, const char *reason, size_t len) {
    ret->tag = COURIER_PLUGIN_TYPES_OUTCOME_FATAL;
    handler_plugin_string_dup_n(&ret->val.fatal, reason, len);
}

static void outcome_retry(outcome_t *ret, const char *reason) {
    ret->tag = COURIER_PLUGIN_TYPES_OUTCOME_RETRY;
    handler_plugin_string_dup(&ret->val.retry.reason, reason);
    ret->val.retry.delay_ms.is_some = false;
}

void exports_courier_plugin_handler_describe(exports_courier_plugin_handler_plugin_info_t *ret) {
    courier_plugin_types_subscription_t *subscription = calloc(1, sizeof *subscription);
    handler_plugin_string_t *events = calloc(1, sizeof *events);
    if (!subscription || !events) abort();

    handler_plugin_string_dup(&ret->name, "welcome-email-c");
    handler_plugin_string_dup(&ret->version, "0.1.0");
    handler_plugin_string_dup(&subscription->queue, "emails");
    handler_plugin_string_dup(&subscription->topic, "user");
    handler_plugin_string_dup(&events[0], "created");
    subscription->events.ptr = events;
    subscription->events.len = 1;
    ret->subscriptions.ptr = subscription;
    ret->subscriptions.len = 1;
}

void exports_courier_plugin_handler_handle(exports_courier_plugin_handler_delivery_t *delivery,
                                           outcome_t *ret) {
    const courier_plugin_types_message_t *message = &delivery->message;
    char *email = NULL;
    size_t email_len = 0;
    handler_plugin_string_t configured = {0};
    bool has_from = false;
    courier_json_buf line = {0};
    courier_json_buf follow_up = {0};

    switch (courier_json_get_string(message->payload.ptr, message->payload.len, "email", &email,
                                    &email_len)) {
    case COURIER_JSON_FOUND:
        break;
    case COURIER_JSON_MISSING:
    case COURIER_JSON_NOT_STRING: {
        static const char reason[] = "payload has no `email` field";
        outcome_fatal(ret, reason, sizeof reason - 1);
        goto done;
    }
    case COURIER_JSON_INVALID: {
        static const char reason[] = "payload is not JSON";
        outcome_fatal(ret, reason, sizeof reason - 1);
        goto done;
    }
    case COURIER_JSON_NO_MEMORY:
        outcome_retry(ret, "out of memory reading the payload");
        goto done;
    }

    handler_plugin_string_t key;
    handler_plugin_string_set(&key, "from");
    has_from = courier_plugin_host_config(&key, &configured);
    const char *from = has_from ? (const char *)configured.ptr : DEFAULT_FROM;
    size_t from_len = has_from ? configured.len : strlen(DEFAULT_FROM);

    /* "sending welcome email to <email> from <from>" */
    courier_json_buf_raw(&line, "sending welcome email to ");
    courier_json_buf_bytes(&line, email, email_len);
    courier_json_buf_raw(&line, " from ");
    courier_json_buf_bytes(&line, from, from_len);
    /* {"to": <email>, "from": <from>, "user_message_id": <message id>} */
    courier_json_buf_raw(&follow_up, "{\"to\":");
    courier_json_buf_string(&follow_up, email, email_len);
    courier_json_buf_raw(&follow_up, ",\"from\":");
    courier_json_buf_string(&follow_up, from, from_len);
    courier_json_buf_raw(&follow_up, ",\"user_message_id\":");
    courier_json_buf_string(&follow_up, (const char *)message->id.ptr, message->id.len);
    courier_json_buf_raw(&follow_up, "}");
    if (line.failed || follow_up.failed) {
        outcome_retry(ret, "out of memory writing the follow-up event");
        goto done;
    }

    handler_plugin_string_t text = {line.ptr, line.len};
    courier_plugin_host_log(COURIER_PLUGIN_HOST_LEVEL_INFO, &text);

    handler_plugin_string_t name;
    handler_plugin_string_set(&name, "email.sent");
    handler_plugin_list_u8_t payload = {follow_up.ptr, follow_up.len};
    courier_plugin_host_publish_options_t options = {0}; /* new id, due now, no headers */
    handler_plugin_string_t id, error;
    if (courier_plugin_host_publish(&name, &payload, &options, &id, &error)) {
        handler_plugin_string_free(&id);
        ret->tag = COURIER_PLUGIN_TYPES_OUTCOME_OK;
    } else {
        /* The host refused the event: retrying would not change its mind. */
        static const char prefix[] = "cannot publish email.sent: ";
        courier_json_buf reason = {0};
        courier_json_buf_raw(&reason, prefix);
        courier_json_buf_bytes(&reason, error.ptr, error.len);
        if (reason.failed) {
            outcome_retry(ret, "out of memory");
        } else {
            outcome_fatal(ret, (const char *)reason.ptr, reason.len);
        }
        courier_json_buf_free(&reason);
        handler_plugin_string_free(&error);
    }

done:
    courier_json_buf_free(&line);
    courier_json_buf_free(&follow_up);
    if (has_from) handler_plugin_string_free(&configured);
    free(email);
    exports_courier_plugin_handler_delivery_free(delivery);
}
