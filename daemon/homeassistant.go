package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/inferq/inferq/internal/logkey"
	"github.com/inferq/inferq/transport/mqtt"
)

// Home Assistant MQTT discovery (mqtt.homeassistant): the box announces itself as one
// device with sensors read from its own topics, so nothing but these retained configs
// is published for Home Assistant:
//
//	<discovery_prefix>/sensor/<node>/<object>/config    retained, one per sensor
//
// Sensors: status (ok/degraded/failing, problems as attributes), queue depth, oldest
// queued age, dead jobs, jobs per minute and p99 run time, all from the retained health
// document; and per source the last result's label and score from results/<source>.
// Every sensor's availability is <prefix>/<node>/available through a template: the
// JSON's state online is available, stopped and offline are not. The configs are
// published after every connect and again whenever Home Assistant announces itself
// with "online" on <discovery_prefix>/status (its birth message). haConfigs is a pure
// function of the node, the prefixes, the version and the sources.

// haInputs are what the discovery configs depend on.
type haInputs struct {
	node, prefix, discoveryPrefix, version string
	sources                                []string
}

// haConfig is one discovery message.
type haConfig struct {
	Topic   string
	Payload []byte
}

// haSensorConfig is the discovery payload of one MQTT sensor, in Home Assistant's
// documented field names (the long forms, not the abbreviations).
type haSensorConfig struct {
	Name                   string   `json:"name"`
	UniqueID               string   `json:"unique_id"`
	StateTopic             string   `json:"state_topic"`
	ValueTemplate          string   `json:"value_template"`
	JSONAttributesTopic    string   `json:"json_attributes_topic,omitempty"`
	JSONAttributesTemplate string   `json:"json_attributes_template,omitempty"`
	AvailabilityTopic      string   `json:"availability_topic"`
	AvailabilityTemplate   string   `json:"availability_template"`
	PayloadAvailable       string   `json:"payload_available"`
	PayloadNotAvailable    string   `json:"payload_not_available"`
	DeviceClass            string   `json:"device_class,omitempty"`
	StateClass             string   `json:"state_class,omitempty"`
	UnitOfMeasurement      string   `json:"unit_of_measurement,omitempty"`
	Options                []string `json:"options,omitempty"`
	Icon                   string   `json:"icon,omitempty"`
	QoS                    int      `json:"qos"`
	Device                 haDevice `json:"device"`
	Origin                 haOrigin `json:"origin"`
}

type haDevice struct {
	Identifiers  []string `json:"identifiers"`
	Name         string   `json:"name"`
	Manufacturer string   `json:"manufacturer"`
	Model        string   `json:"model"`
	SWVersion    string   `json:"sw_version,omitempty"`
}

type haOrigin struct {
	Name      string `json:"name"`
	SWVersion string `json:"sw_version,omitempty"`
}

// The templates Home Assistant renders (Jinja). value_json is the payload parsed as
// JSON; it is undefined for a payload that is not JSON (availability without a boot
// sequence is a bare word).
const (
	haAvailabilityTemplate = `{{ 'online' if (value_json.state if value_json is defined else value) == 'online' else 'offline' }}`
	haStatusAttributes     = `{{ {'problems': value_json.problems if value_json.problems is defined else [], 'model': value_json.model.name, 'version': value_json.version} | tojson }}`
	// haTop sets top to the result's best classes or detections (best first), [] for
	// none, whatever the model kind.
	haTop           = `{% set o = value_json.output if value_json.output is defined and value_json.output else {} %}{% set top = o.classes if o.classes is defined and o.classes else (o.detections if o.detections is defined and o.detections else []) %}`
	haLabelTemplate = haTop + `{% if value_json.status != 'ok' %}{{ value_json.status }}{% elif top %}{{ top[0].label if top[0].label is defined and top[0].label else 'class ' ~ (top[0].index if top[0].index is defined else top[0].class) }}{% else %}none{% endif %}`
	// A score only for an ok result with something in it; "None" makes the sensor unknown.
	haScoreTemplate = haTop + `{{ (top[0].score | float) | round(4) if value_json.status == 'ok' and top else 'None' }}`
	haResultAttrs   = `{{ {'job_id': value_json.job_id, 'status': value_json.status, 'finished_at': value_json.finished_at} | tojson }}`
)

// haSensor describes one sensor before the shared fields are added.
type haSensor struct {
	object, name, topic, template, attrs string
	deviceClass, stateClass, unit, icon  string
	options                              []string
}

func haSensors(in haInputs) []haSensor {
	base := in.prefix + "/" + in.node + "/"
	health := base + "health"
	out := []haSensor{
		{object: "status", name: "Status", topic: health, template: "{{ value_json.status }}", attrs: haStatusAttributes,
			deviceClass: "enum", options: []string{HealthOK, HealthDegraded, HealthFailing}, icon: "mdi:heart-pulse"},
		{object: "queue_depth", name: "Queue depth", topic: health, template: "{{ value_json.queue.depth }}",
			stateClass: "measurement", unit: "jobs", icon: "mdi:tray-full"},
		{object: "oldest_age", name: "Oldest queued job age", topic: health, template: "{{ value_json.queue.oldest_age_s }}",
			deviceClass: "duration", stateClass: "measurement", unit: "s"},
		{object: "dead", name: "Dead jobs", topic: health, template: "{{ value_json.queue.dead }}",
			stateClass: "measurement", unit: "jobs", icon: "mdi:skull-outline"},
		{object: "jobs_per_minute", name: "Jobs per minute", topic: health, template: "{{ value_json.jobs.per_minute }}",
			stateClass: "measurement", unit: "jobs/min", icon: "mdi:speedometer"},
		{object: "p99", name: "Run time p99", topic: health, template: "{{ value_json.jobs.p99_ms }}",
			deviceClass: "duration", stateClass: "measurement", unit: "ms"},
	}
	for _, s := range in.sources {
		id := haID(s)
		out = append(out,
			haSensor{object: "last_label_" + id, name: "Last result " + s, topic: base + "results/" + s,
				template: haLabelTemplate, attrs: haResultAttrs, icon: "mdi:label-outline"},
			haSensor{object: "last_score_" + id, name: "Last score " + s, topic: base + "results/" + s,
				template: haScoreTemplate, stateClass: "measurement", icon: "mdi:percent"})
	}
	return out
}

// haConfigs are the retained discovery messages for in.
func haConfigs(in haInputs) []haConfig {
	node := haID(in.node)
	dev := haDevice{Identifiers: []string{"inferq_" + node}, Name: "inferq " + in.node, Manufacturer: "inferq",
		Model: "inferq edge inference daemon", SWVersion: in.version}
	origin := haOrigin{Name: "inferq", SWVersion: in.version}
	var out []haConfig
	for _, s := range haSensors(in) {
		c := haSensorConfig{
			Name: s.name, UniqueID: "inferq_" + node + "_" + s.object, StateTopic: s.topic, ValueTemplate: s.template,
			AvailabilityTopic: in.prefix + "/" + in.node + "/available", AvailabilityTemplate: haAvailabilityTemplate,
			PayloadAvailable: mqtt.Online, PayloadNotAvailable: mqtt.Offline,
			DeviceClass: s.deviceClass, StateClass: s.stateClass, UnitOfMeasurement: s.unit, Options: s.options, Icon: s.icon,
			QoS: 1, Device: dev, Origin: origin,
		}
		if s.attrs != "" {
			c.JSONAttributesTopic, c.JSONAttributesTemplate = s.topic, s.attrs
		}
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false) // templates stay readable on the wire
		_ = enc.Encode(c)        // strings only
		out = append(out, haConfig{
			Topic:   in.discoveryPrefix + "/sensor/" + node + "/" + s.object + "/config",
			Payload: bytes.TrimRight(b.Bytes(), "\n"),
		})
	}
	return out
}

var notHAChars = regexp.MustCompile(`[^A-Za-z0-9_-]`)

// haID makes s a Home Assistant node or object id ([A-Za-z0-9_-] only). A name that
// had other characters gets a short hash of itself, so two names never share an id.
func haID(s string) string {
	clean := notHAChars.ReplaceAllString(s, "_")
	if clean == s {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return clean + "_" + hex.EncodeToString(sum[:4])
}

// haSources are the sources that get last-result sensors: the spool's and MQTT
// ingest's configured ones and mqtt.homeassistant.sources, sorted, each once.
func (c Config) haSources() []string {
	var out []string
	if c.Spool.Enabled {
		out = append(out, c.Spool.DefaultSource)
		for _, s := range c.Spool.Sources {
			out = append(out, s.Name)
		}
	}
	if c.MQTT.Ingest.Enabled {
		for s := range c.MQTT.Ingest.SourcePriority {
			out = append(out, s)
		}
	}
	out = append(out, c.MQTT.HomeAssistant.Sources...)
	slices.Sort(out)
	return slices.Compact(slices.DeleteFunc(out, func(s string) bool { return s == "" }))
}

// homeAssistant publishes the discovery configs.
type homeAssistant struct {
	configs []haConfig
	status  string // Home Assistant's birth topic
	publish func(ctx context.Context, topic string, payload []byte, retained bool) error
	log     *slog.Logger
	mu      sync.Mutex // one announcement at a time
	rounds  atomic.Uint64
}

// announce publishes every config, retained; after a failure the next connect or
// birth message tries again.
func (h *homeAssistant) announce(ctx context.Context) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.configs {
		if err := h.publish(ctx, c.Topic, c.Payload, true); err != nil {
			h.log.Warn("cannot publish home assistant discovery", "topic", c.Topic, logkey.Err, err)
			return
		}
	}
	h.rounds.Add(1)
	h.log.Info("home assistant discovery published", "sensors", len(h.configs))
}

// onStatus announces again when Home Assistant says it is online. A retained status
// is old news: the configs went out at the connect that brought it.
func (h *homeAssistant) onStatus(ctx context.Context, m mqtt.Message) {
	if m.Retained || strings.TrimSpace(string(m.Payload)) != mqtt.Online {
		return
	}
	h.announce(ctx)
}

// addHomeAssistant hooks discovery into the MQTT client's configuration: announced at
// every connect and on Home Assistant's birth. Turned off, the birth subscription an
// earlier run may have left in the persistent session is dropped.
func (d *Daemon) addHomeAssistant(mcfg *mqtt.Config) {
	hc := d.cfg.MQTT.HomeAssistant
	status := hc.DiscoveryPrefix + "/status"
	if !hc.Enabled {
		mcfg.Unsubscribe = append(mcfg.Unsubscribe, status)
		return
	}
	d.ha = &homeAssistant{
		configs: haConfigs(haInputs{node: d.node, prefix: mcfg.Prefix, discoveryPrefix: hc.DiscoveryPrefix,
			version: d.opts.Version, sources: d.cfg.haSources()}),
		status: status,
		publish: func(ctx context.Context, topic string, payload []byte, retained bool) error {
			return d.client.Publish(ctx, topic, payload, retained)
		},
		log: d.log.With(logkey.Component, "homeassistant"),
	}
	mcfg.Subscriptions = append(mcfg.Subscriptions, mqtt.Subscription{Filter: status, QoS: 0, Handle: d.ha.onStatus})
	prev := mcfg.OnConnect
	mcfg.OnConnect = func(ctx context.Context) {
		if prev != nil {
			prev(ctx)
		}
		d.ha.announce(ctx)
	}
}

// check validates mqtt.homeassistant.
func (h HomeAssistantConfig) check() []error {
	var errs fieldErrors
	bad := errs.bad
	if !h.Enabled {
		return nil
	}
	if err := mqtt.ValidateTopic(h.DiscoveryPrefix); err != nil {
		bad("mqtt.homeassistant.discovery_prefix", strconv.Quote(h.DiscoveryPrefix), "must be an MQTT topic: "+err.Error())
	}
	for i, s := range h.Sources {
		if !topicLevel.MatchString(s) || strings.HasPrefix(s, "$") {
			bad(fmt.Sprintf("mqtt.homeassistant.sources[%d]", i), strconv.Quote(s), "must be a source name (one MQTT topic level)")
		}
	}
	return errs
}
