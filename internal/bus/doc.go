// Package bus is Alicia's MQTT connection, shared by the agent and the hub
// (both may import it); it wraps github.com/eclipse/paho.mqtt.golang and
// imports nothing of mochi, the hub or the agent.
//
// A Client connects to one broker (plain TCP or TLS), retries with a capped,
// jittered backoff until the broker is up, reconnects after any loss, and
// re-subscribes every registered subscription itself after each connect
// (clean session; paho's ResumeSubs and AutoReconnect are not used). Its
// life is Run(ctx): when ctx is done, Run publishes the configured Goodbye
// messages, sends a clean DISCONNECT (so the broker discards the Last Will)
// and returns.
//
// Handlers never run on paho's router goroutine: each subscription has a
// bounded queue drained by one worker goroutine, so a slow handler delays
// only its own subscription and, when its queue is full, loses messages
// (counted in Stats.Dropped) instead of stalling the connection.
//
// Delivery guarantees are MQTT's and no more: a returned Publish is not proof
// that anything was stored, and messages queued for a handler are lost when
// Run returns. Callers that need durability keep their own outbox and
// application-level acknowledgements.
package bus
