//! Reading `palisade.yaml`: parse it, report unknown keys, then check every value against the
//! others and collect every problem with its position. The types it checks are in `mod.rs`
//! and in the components that own them.

use super::*;

/// How the config's durations ([`crate::duration::Span`]) are checked in the file's text.
const DURATION: crate::diagnostics::TextType = crate::diagnostics::TextType {
    schema_name: crate::duration::SPAN_SCHEMA_NAME,
    accepts: |text| crate::duration::parse(text).is_some(),
    stand_in: "1s",
    code: "invalid-duration",
    expected: "a duration above zero like 5s or 2m (units s, m, h, d, w)",
};

/// How `actions.cooldown` is checked: a duration, or `off`.
const COOLDOWN: crate::diagnostics::TextType = crate::diagnostics::TextType {
    schema_name: Cooldown::SCHEMA_NAME,
    accepts: |text| text == "off" || crate::duration::parse(text).is_some(),
    stand_in: "off",
    code: "invalid-duration",
    expected: "a duration above zero like 30s or 10m, or `off`",
};

/// Parses and checks a configuration file's text; `path` names it in diagnostics.
pub fn parse(path: &Path, source: &str) -> Result<Config, Diagnostics> {
    // A byte-order mark is not content (and would make a comments-only file look non-empty).
    let source = crate::diagnostics::strip_bom(source);
    let mut problems = Diagnostics::default();
    // An empty file (or one with only comments) means all defaults.
    let config: Config = if source
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        Config::default()
    } else {
        // Every duration is read as one here, all wrong ones reported at once.
        let (config, unknown_keys) =
            crate::diagnostics::parse_yaml_checking(path, source, schema(), &[DURATION, COOLDOWN])?;
        problems.extend(unknown_keys);
        config
    };
    let mut report = |at: YamlPath, message: String| {
        problems.push(Diagnostic::at(
            path,
            source,
            locate(source, &at),
            "config-invalid",
            message,
        ));
    };
    let root = YamlPath::root();
    let limits = &config.limits;
    let at = root.key("limits");
    for (name, value) in [
        ("max_operations", limits.max_operations),
        ("time_budget_ms", limits.time_budget_ms),
        ("max_call_depth", limits.max_call_depth as u64),
        ("max_expr_depth", limits.max_expr_depth as u64),
        ("max_string_size", limits.max_string_size as u64),
        ("max_array_size", limits.max_array_size as u64),
        ("max_map_size", limits.max_map_size as u64),
    ] {
        if value == 0 {
            report(
                at.key(name),
                format!(
                    "`limits.{name}` must be greater than 0; a zero limit would stop every rule"
                ),
            );
        }
    }
    for (at, value) in [
        (root.key("content").key("rules"), &config.content.rules),
        (
            root.key("content").key("playbooks"),
            &config.content.playbooks,
        ),
        (root.key("state").key("path"), &config.state.path),
        (
            root.key("audit").key("key"),
            config.audit.key.as_ref().unwrap_or(&config.state.path),
        ),
        (
            root.key("audit").key("anchor"),
            config.audit.anchor.as_ref().unwrap_or(&config.state.path),
        ),
        (
            root.key("dead_letter").key("path"),
            &config.dead_letter.path,
        ),
    ] {
        if value.as_os_str().is_empty() {
            report(at, "path must not be empty".into());
        }
    }
    // A declared extra field with an empty part (`""`, `sensor..version`) could never match a
    // read, so the warning it was meant to silence would stay: say so here instead.
    for (index, field) in config.events.extra_fields.iter().enumerate() {
        if field.split('.').any(str::is_empty) {
            report(
                root.key("events").key("extra_fields").index(index),
                format!(
                    "`events.extra_fields` entry `{field}` must be a dotted path of field names, such as `sensor.version`"
                ),
            );
        }
    }
    // The name stands in every operator record of the audit trail: one plain line.
    if let Some(name) = &config.audit.operator
        && (name.trim().is_empty() || name.chars().any(char::is_control))
    {
        report(
            root.key("audit").key("operator"),
            "`audit.operator` must be a name on one line, without control characters".into(),
        );
    }
    // The anchor is rewritten on every append: over the key or the database it would destroy them.
    let audit =
        crate::audit::AuditFiles::from_config(&config.audit, &config.state.path, Path::to_path_buf);
    let clash = if audit.anchor == audit.key || audit.anchor == config.state.path {
        Some("anchor")
    } else if audit.key == config.state.path {
        Some("key")
    } else {
        None
    };
    if let Some(field) = clash {
        report(
            root.key("audit").key(field),
            "`audit.key`, `audit.anchor` and `state.path` must be three different files".into(),
        );
    }
    // The console's own check, the one `palisade run` makes before it listens, reported at the
    // field it is about.
    if let Err(err) = crate::console::Plan::from_config(&config.console) {
        use crate::console::ConsoleError;
        let console = root.key("console");
        let at = match &err {
            ConsoleError::Listen(_) | ConsoleError::NotLoopback(_) => console.key("listen"),
            ConsoleError::AllowPlain(_) => console.key("allow_plain_http_on"),
            ConsoleError::Credential { index, .. } => {
                console.key("operators").index(*index).key("password_hash")
            }
            ConsoleError::Name { index, .. } => console.key("operators").index(*index).key("name"),
            ConsoleError::NoOperators => console.key("enabled"),
            ConsoleError::NoSession => console.key("session_minutes"),
        };
        report(at, err.to_string());
    }
    match config.http.listen.parse::<std::net::SocketAddr>() {
        Ok(address) if address.ip().is_loopback() => {}
        Ok(address) => report(
            root.key("http").key("listen"),
            format!(
                "`http.listen` is `{address}`; the endpoints are for this machine only, so use a loopback address such as 127.0.0.1:9464"
            ),
        ),
        Err(_) => report(
            root.key("http").key("listen"),
            format!(
                "`http.listen` is `{}`, not an address and port like 127.0.0.1:9464",
                config.http.listen
            ),
        ),
    }
    if !(config.anomaly.threshold > 0.0 && config.anomaly.threshold <= 1.0) {
        report(
            root.key("anomaly").key("threshold"),
            format!(
                "`anomaly.threshold` must be above 0 and at most 1, not {}",
                config.anomaly.threshold
            ),
        );
    }
    let learning = &config.anomaly.learning;
    let at = root.key("anomaly").key("learning");
    if learning.max_sample < 1_000 {
        report(
            at.key("max_sample"),
            format!(
                "`anomaly.learning.max_sample` is {}; a model needs at least 1000 sample events",
                learning.max_sample
            ),
        );
    }
    if learning.per_bucket == 0 {
        report(
            at.key("per_bucket"),
            "`anomaly.learning.per_bucket` must be at least 1".into(),
        );
    }
    if learning.window_days == 0 || learning.window_days < learning.min_days {
        // Named where it is most likely to have been set: a window of 0, or a minimum of days
        // past the window.
        let key = if learning.window_days == 0 {
            "window_days"
        } else {
            "min_days"
        };
        report(
            at.key(key),
            format!(
                "`anomaly.learning.window_days` is {}; it must be at least 1 and at least `min_days` ({})",
                learning.window_days, learning.min_days
            ),
        );
    }
    if !(learning.drift_factor.is_finite() && learning.drift_factor >= 1.0) {
        report(
            at.key("drift_factor"),
            format!(
                "`anomaly.learning.drift_factor` must be at least 1, not {}",
                learning.drift_factor
            ),
        );
    }
    if !(learning.max_held_out_rate.is_finite()
        && learning.max_held_out_rate > 0.0
        && learning.max_held_out_rate <= 1.0)
    {
        report(
            at.key("max_held_out_rate"),
            format!(
                "`anomaly.learning.max_held_out_rate` must be above 0 and at most 1, not {}",
                learning.max_held_out_rate
            ),
        );
    }
    let tracker = &config.tracker;
    let at = root.key("tracker");
    if tracker.retention_days == 0 {
        report(
            at.key("retention_days"),
            "`tracker.retention_days` must be at least 1".into(),
        );
    }
    if tracker.min_records < 3 {
        report(
            at.key("min_records"),
            "`tracker.min_records` must be at least 3: fewer records say nothing about behaviour"
                .into(),
        );
    }
    if !(tracker.beacon_max_jitter > 0.0 && tracker.beacon_max_jitter < 1.0) {
        report(
            at.key("beacon_max_jitter"),
            "`tracker.beacon_max_jitter` must be between 0 and 1 (0.2 allows intervals about 20% apart)".into(),
        );
    }
    for (key, value) in [
        ("scan_distinct_ports", tracker.scan_distinct_ports),
        ("scan_distinct_hosts", tracker.scan_distinct_hosts),
    ] {
        if value < 2 {
            report(at.key(key), format!("`tracker.{key}` must be at least 2"));
        }
    }
    let fetch = &config.intel.fetch;
    let at = root.key("intel").key("fetch");
    if fetch.max_body_bytes == 0 {
        report(
            at.key("max_body_bytes"),
            "`intel.fetch.max_body_bytes` must be greater than 0".into(),
        );
    }
    if fetch.max_pages == 0 {
        report(
            at.key("max_pages"),
            "`intel.fetch.max_pages` must be at least 1".into(),
        );
    }
    if !(0.0..=1.0).contains(&fetch.min_parsed_ratio) {
        report(
            at.key("min_parsed_ratio"),
            format!(
                "`intel.fetch.min_parsed_ratio` must be between 0 and 1, not {}",
                fetch.min_parsed_ratio
            ),
        );
    }
    if let Err((key, message)) = config.actions.effects.settings() {
        report(root.key("actions").key("effects").key(&key), message);
    }
    if let Err(problems) = config.actions.email.settings() {
        for (key, message) in problems {
            report(root.key("actions").key("email").key(key), message);
        }
    }
    if let Err(message) = redis::Client::open(config.redis.url.as_str()) {
        report(
            root.key("redis").key("url"),
            format!("invalid Redis URL `{}`: {message}", config.redis.url),
        );
    }
    match &config.source {
        SourceConfig::RedisStream(stream) => {
            let at = root.key("source");
            for (key, value) in [
                ("stream", &stream.stream),
                ("group", &stream.group),
                ("dead_letter_stream", &stream.dead_letter_stream),
            ] {
                if value.trim().is_empty() {
                    report(at.key(key), format!("`source.{key}` must not be empty"));
                }
            }
            if !(1..=10_000).contains(&stream.batch_size) {
                report(
                    at.key("batch_size"),
                    "`source.batch_size` must be between 1 and 10000".into(),
                );
            }
            if stream.block_ms == 0 || stream.block_ms > 60_000 {
                report(
                    at.key("block_ms"),
                    "`source.block_ms` must be between 1 and 60000".into(),
                );
            }
            if stream.max_deliveries == 0 {
                report(
                    at.key("max_deliveries"),
                    "`source.max_deliveries` must be at least 1".into(),
                );
            }
            if stream.claim_idle_ms < 1000 {
                report(at.key("claim_idle_ms"), "`source.claim_idle_ms` below 1000 would claim entries other engines are still handling".into());
            }
            if stream.stream == stream.dead_letter_stream {
                report(
                    at.key("dead_letter_stream"),
                    "the dead-letter stream must differ from the source stream".into(),
                );
            }
        }
        SourceConfig::RedisChannel(channel) => {
            if channel.channel.trim().is_empty() {
                report(
                    root.key("source").key("channel"),
                    "`source.channel` must not be empty".into(),
                );
            }
            if !(1..=10_000).contains(&channel.batch_size) {
                report(
                    root.key("source").key("batch_size"),
                    "`source.batch_size` must be between 1 and 10000".into(),
                );
            }
        }
        SourceConfig::Jsonl { .. } => {}
    }
    if let Err(problem) = config.actions.policy(&config.redis.url) {
        report(root.key("actions"), problem.to_string());
    }
    for (key, value, full) in [
        ("ipv4", config.intel.max_prefix.ipv4, 32),
        ("ipv6", config.intel.max_prefix.ipv6, 128),
    ] {
        if value > full {
            report(
                root.key("intel").key("max_prefix").key(key),
                format!("`intel.max_prefix.{key}` is {value}; a prefix length is at most {full}"),
            );
        }
    }
    let mut names = std::collections::HashSet::new();
    for (index, feed) in config.intel.feeds.iter().enumerate() {
        let at = root.key("intel").key("feeds").index(index);
        if !names.insert(feed.name.as_str()) || feed.name.trim().is_empty() {
            report(
                at.key("name"),
                format!("feed name `{}` must be unique and not empty", feed.name),
            );
        }
        if !matches!(
            url::Url::parse(&feed.url)
                .map(|u| u.scheme().to_string())
                .as_deref(),
            Ok("http" | "https")
        ) {
            report(
                at.key("url"),
                format!("feed url `{}` must be an http or https URL", feed.url),
            );
        }
        match (feed.kind, feed.format) {
            (FeedType::Http, None) => report(at.key("type"), "an `http` feed needs a `format` (feodo, urlhaus, threatfox, stix, misp, otx, abuseipdb, plain)".into()),
            (FeedType::Http, Some(crate::intel::formats::Format::MispFeed)) => report(at.key("format"), "`misp-feed` is a directory; pull a MISP instance with `type: misp`".into()),
            (FeedType::Taxii | FeedType::Misp | FeedType::Elasticsearch, Some(_)) => report(at.key("format"), "`format` is only for `http` feeds".into()),
            _ => {}
        }
        if feed.snapshot && feed.kind != FeedType::Http {
            report(at.key("snapshot"), "`snapshot` is only for `http` feeds; TAXII and MISP deliver changes, not whole lists".into());
        }
        if feed.elasticsearch.is_some() && feed.kind != FeedType::Elasticsearch {
            report(
                at.key("elasticsearch"),
                "`elasticsearch` settings are only for `elasticsearch` feeds".into(),
            );
        }
        if let Some(es) = &feed.elasticsearch {
            if es.username_env.is_some() != es.password_env.is_some() {
                report(
                    at.key("elasticsearch"),
                    "basic auth needs both `username_env` and `password_env`".into(),
                );
            }
            if es.username_env.is_some() && feed.api_key_env.is_some() {
                report(
                    at.key("api_key_env"),
                    "an `elasticsearch` feed takes an API key or basic auth, not both".into(),
                );
            }
            // The index goes into the request path: a name with `/`, `?` or `#` would reach
            // another endpoint, and `,` or `*` would read more indices than the one named.
            if es.index.is_empty()
                || es.index.starts_with(['_', '-', '+'])
                || es
                    .index
                    .contains(['/', '?', '#', ',', '*', ' ', '\\', '"', '<', '>', '|'])
            {
                report(
                    at.key("elasticsearch").key("index"),
                    format!("`{}` is not an Elasticsearch index name", es.index),
                );
            }
        }
        if !(1..=10_000).contains(&feed.page_size) {
            report(
                at.key("page_size"),
                "`page_size` must be between 1 and 10000".into(),
            );
        }
    }
    if let Some(es) = &config.alerts.elasticsearch {
        let at = root.key("alerts").key("elasticsearch");
        if !matches!(
            url::Url::parse(&es.url)
                .map(|u| u.scheme().to_string())
                .as_deref(),
            Ok("http" | "https")
        ) {
            report(
                at.key("url"),
                format!("`{}` must be an http or https URL", es.url),
            );
        }
        if !(1..=10_000).contains(&es.batch) {
            report(
                at.key("batch"),
                "`batch` must be between 1 and 10000".into(),
            );
        }
        if es.api_key_env.is_some() && es.username_env.is_some()
            || es.username_env.is_some() != es.password_env.is_some()
        {
            report(
                at.clone(),
                "give `api_key_env`, or both `username_env` and `password_env`".into(),
            );
        }
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}
