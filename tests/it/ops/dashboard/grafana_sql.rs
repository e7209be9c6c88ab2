//! Grafana's PostgreSQL data source as the fleet dashboard's tests need it: a query's text turned
//! into the SQL Grafana 10 and 11 send to the server, so that the tests run exactly that. In the
//! order Grafana applies them: the dashboard's template variables (`$name`, `${name}`,
//! `${name:sqlstring}`, `${name:raw}`), then the substitutions every SQL data source makes
//! (`$__interval_ms`, `$__interval`, `$__unixEpochFrom()`, `$__unixEpochTo()`), then the
//! PostgreSQL macros, each `$__name(arguments)` read up to the first `)` and its arguments split
//! at commas (so an argument can hold neither), expanded as the data source's macro engine does.
//! Times are nanoseconds since the epoch, like the store's columns.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

/// What a query is expanded for: the dashboard's time range, the interval Grafana computed for
/// the panel (`"10m"`) and the values of the dashboard's variables.
pub struct Context<'a> {
    pub from_ns: i64,
    pub to_ns: i64,
    pub interval: &'a str,
    pub variables: &'a [(&'a str, &'a [&'a str])],
}

const NS_PER_S: i64 = 1_000_000_000;

/// The SQL Grafana sends for `query`, or what it could not expand (an unknown variable or
/// macro, or arguments a macro refuses, which Grafana shows as the panel's error).
pub fn expand(query: &str, ctx: &Context<'_>) -> Result<String, String> {
    let sql = variables(query, ctx)?;
    let interval = seconds_of(ctx.interval)?;
    let sql = sql
        .replace("$__interval_ms", &format!("{}", (interval * 1000.0) as i64))
        .replace("$__interval", ctx.interval)
        .replace("$__unixEpochFrom()", &(ctx.from_ns / NS_PER_S).to_string())
        .replace("$__unixEpochTo()", &(ctx.to_ns / NS_PER_S).to_string());
    macros(&sql, ctx)
}

/// The template variables replaced: a multi-value variable's values quoted as SQL strings and
/// joined by commas (the default for SQL data sources, and `:sqlstring`), or joined as they are
/// (`:raw`). `$__…` names are left for the next steps.
fn variables(query: &str, ctx: &Context<'_>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = query;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, format, used) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {query:?}"))?;
            let inner = &braced[..end];
            let (name, format) = inner.split_once(':').unwrap_or((inner, ""));
            (name, format, end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], "", end)
        };
        if name.starts_with("__") {
            out.push('$');
            rest = after;
            continue;
        }
        let values = ctx
            .variables
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("unknown variable ${name} in {query:?}"))?;
        let joined = match format {
            "" | "sqlstring" => values
                .iter()
                .map(|v| format!("'{}'", v.replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(","),
            "raw" => values.join(","),
            other => return Err(format!("variable format {other:?} is not emulated")),
        };
        out.push_str(&joined);
        rest = &after[used..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Every `$__name(arguments)` expanded.
fn macros(sql: &str, ctx: &Context<'_>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find("$__") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..name_len];
        let Some(open) = after[name_len..].strip_prefix('(') else {
            return Err(format!("${name} is not followed by ( in {sql:?}"));
        };
        let close = open
            .find(')')
            .ok_or_else(|| format!("${name}( is not closed in {sql:?}"))?;
        let args: Vec<&str> = open[..close].split(',').map(str::trim).collect();
        // Grafana reads `$__timeGroup(…),` (a comma right after it) as the aliased form.
        let tail = &open[close + 1..];
        let name = if name == "__timeGroup" && tail.starts_with(',') {
            "__timeGroupAlias"
        } else {
            name
        };
        out.push_str(&evaluate(name, &args, ctx)?);
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}

fn evaluate(name: &str, args: &[&str], ctx: &Context<'_>) -> Result<String, String> {
    let column = || {
        args.first()
            .copied()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| format!("missing time column argument for macro {name}"))
    };
    let grouping = || -> Result<(&str, String), String> {
        let [column, interval, ..] = args else {
            return Err(format!(
                "macro {name} needs time column and interval and optional fill value"
            ));
        };
        let seconds = seconds_of(interval.trim_matches('\''))?;
        Ok((column, go_float(seconds)))
    };
    let (from_s, to_s) = (ctx.from_ns / NS_PER_S, ctx.to_ns / NS_PER_S);
    Ok(match name {
        "__time" => format!("{} AS \"time\"", column()?),
        "__timeEpoch" => format!("extract(epoch from {}) as \"time\"", column()?),
        "__timeFilter" => format!(
            "{} BETWEEN '{}' AND '{}'",
            column()?,
            rfc3339(ctx.from_ns)?,
            rfc3339(ctx.to_ns)?
        ),
        "__timeFrom" => format!("'{}'", rfc3339(ctx.from_ns)?),
        "__timeTo" => format!("'{}'", rfc3339(ctx.to_ns)?),
        "__timeGroup" | "__timeGroupAlias" => {
            let (column, s) = grouping()?;
            let alias = if name == "__timeGroupAlias" {
                " AS \"time\""
            } else {
                ""
            };
            format!("floor(extract(epoch from {column})/{s})*{s}{alias}")
        }
        "__unixEpochFilter" => {
            let c = column()?;
            format!("{c} >= {from_s} AND {c} <= {to_s}")
        }
        "__unixEpochNanoFilter" => {
            let c = column()?;
            format!("{c} >= {} AND {c} <= {}", ctx.from_ns, ctx.to_ns)
        }
        "__unixEpochNanoFrom" => ctx.from_ns.to_string(),
        "__unixEpochNanoTo" => ctx.to_ns.to_string(),
        "__unixEpochGroup" | "__unixEpochGroupAlias" => {
            let (column, s) = grouping()?;
            let alias = if name == "__unixEpochGroupAlias" {
                " AS \"time\""
            } else {
                ""
            };
            format!("floor(({column})/{s})*{s}{alias}")
        }
        other => return Err(format!("unknown macro {other:?}")),
    })
}

/// A Grafana interval (`30s`, `10m`, `1h`, `1d`, `1w`, `500ms`) in seconds.
fn seconds_of(interval: &str) -> Result<f64, String> {
    let split = interval
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(interval.len());
    let (number, unit) = interval.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("error parsing interval {interval:?}"))?;
    let unit_s = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        "w" => 604_800.0,
        _ => return Err(format!("error parsing interval {interval:?}")),
    };
    Ok(n * unit_s)
}

/// A number of seconds as Go's `%v` prints a float64 in this range: `3600`, `0.5`.
fn go_float(seconds: f64) -> String {
    if seconds.fract() == 0.0 {
        format!("{}", seconds as i64)
    } else {
        format!("{seconds}")
    }
}

/// A time as Go's RFC 3339 with nanoseconds prints it in UTC, for whole seconds (the only times
/// the tests use): `2017-04-21T05:01:17Z`.
fn rfc3339(ns: i64) -> Result<String, String> {
    if ns % NS_PER_S != 0 {
        return Err(format!("{ns} ns is not a whole second"));
    }
    let at = chrono::DateTime::from_timestamp(ns / NS_PER_S, 0)
        .ok_or_else(|| format!("{ns} ns is out of range"))?;
    Ok(at.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

#[test]
fn queries_expand_as_grafanas_postgresql_data_source_expands_them() {
    // 2017-04-21T05:01:17Z to 2017-04-22T05:01:17Z, Grafana's documentation's example times.
    let ctx = Context {
        from_ns: 1_492_750_877 * NS_PER_S,
        to_ns: 1_492_837_277 * NS_PER_S,
        interval: "5m",
        variables: &[("target", &["a", "o'b"]), ("n", &["1", "2"])],
    };
    let cases = [
        ("$__time(c)", "c AS \"time\""),
        ("$__timeEpoch(c)", "extract(epoch from c) as \"time\""),
        (
            "$__timeFilter(c)",
            "c BETWEEN '2017-04-21T05:01:17Z' AND '2017-04-22T05:01:17Z'",
        ),
        (
            "$__timeFrom() $__timeTo()",
            "'2017-04-21T05:01:17Z' '2017-04-22T05:01:17Z'",
        ),
        (
            "$__timeGroup(c, '5m')",
            "floor(extract(epoch from c)/300)*300",
        ),
        (
            "$__timeGroup(c,'1h'), x",
            "floor(extract(epoch from c)/3600)*3600 AS \"time\", x",
        ),
        (
            "$__unixEpochFilter(c)",
            "c >= 1492750877 AND c <= 1492837277",
        ),
        (
            "$__unixEpochNanoFilter(c.at)",
            "c.at >= 1492750877000000000 AND c.at <= 1492837277000000000",
        ),
        (
            "$__unixEpochNanoFrom() $__unixEpochNanoTo()",
            "1492750877000000000 1492837277000000000",
        ),
        (
            "$__unixEpochGroupAlias(d.at / 1000000000, '$__interval')",
            "floor((d.at / 1000000000)/300)*300 AS \"time\"",
        ),
        ("$__unixEpochGroup(x, '500ms', 0)", "floor((x)/0.5)*0.5"),
        ("$__unixEpochFrom() $__interval_ms", "1492750877 300000"),
        (
            "t.name IN (${target:sqlstring}) AND t.name IN ($target) AND n IN (${n:raw})",
            "t.name IN ('a','o''b') AND t.name IN ('a','o''b') AND n IN (1,2)",
        ),
    ];
    for (query, expected) in cases {
        assert_eq!(expand(query, &ctx).as_deref(), Ok(expected), "{query}");
    }
    // What Grafana refuses, the emulation refuses too.
    for (query, error) in [
        ("$__nope(c)", "unknown macro \"__nope\""),
        (
            "$__timeGroup(c)",
            "macro __timeGroup needs time column and interval",
        ),
        (
            "$__unixEpochGroup(c, 'soon')",
            "error parsing interval \"soon\"",
        ),
        (
            "$__unixEpochNanoFilter()",
            "missing time column argument for macro",
        ),
        ("$other", "unknown variable $other"),
    ] {
        let found = expand(query, &ctx).unwrap_err();
        assert!(
            found.starts_with(error),
            "{query}: expected {error:?}, found {found:?}"
        );
    }
}
