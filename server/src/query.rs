//! Query strings: the one parameter a route wants, raw (not decoded; the
//! routes that read them validate what they get).

/// The raw value of `name` in `query`, if it is there.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('='))).map(str::to_owned)
}
