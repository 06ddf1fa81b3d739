//! Every Lua script of the crate declares the keys it touches (a cluster routes by them).

use crate::store::redis::scripts;

/// Every Lua script the crate runs, by name.
const SCRIPTS: [(&str, &str); 17] = [
    ("ISSUE", scripts::ISSUE),
    ("REVOKE", scripts::REVOKE),
    ("DELETE", scripts::DELETE),
    ("PURGE", scripts::PURGE),
    ("SET_DISABLED", scripts::SET_DISABLED),
    ("TOUCH", scripts::TOUCH),
    ("REPLACE", scripts::REPLACE),
    ("ADD_ENDPOINT", crate::webhooks::redis::ADD_ENDPOINT),
    ("ENQUEUE", crate::webhooks::redis::ENQUEUE),
    ("CLAIM", crate::webhooks::redis::CLAIM),
    ("FINISH", crate::webhooks::redis::FINISH),
    ("OUTBOX_PURGE", crate::webhooks::redis::PURGE),
    ("GCRA", crate::rate_limit::redis::GCRA),
    ("GCRA_REFUND", crate::rate_limit::redis::GCRA_REFUND),
    (
        "IN_FLIGHT_ACQUIRE",
        crate::rate_limit::in_flight::redis::ACQUIRE,
    ),
    (
        "IN_FLIGHT_RENEW",
        crate::rate_limit::in_flight::redis::RENEW,
    ),
    ("CHARGE", crate::usage::redis::CHARGE),
];

/// Commands whose arguments are no keys (`PUBLISH` names a channel).
const KEYLESS: [&str; 2] = ["TIME", "PUBLISH"];

/// The key names a script passes to `redis.call` that do not come from `KEYS`: each
/// key argument must be `KEYS[…]`, or a variable (or function parameter) that is only
/// ever given `KEYS[…]` or such a variable. `DEL` takes keys in every argument, the
/// others in the first.
fn undeclared_keys(script: &str) -> Vec<String> {
    let mut found = Vec::new();
    for call in script.split("redis.call(").skip(1) {
        let arguments = arguments(call);
        let Some(command) = arguments.first().map(|c| c.trim_matches('\'').to_owned()) else {
            continue;
        };
        if KEYLESS.contains(&command.as_str()) {
            continue;
        }
        let keys = if command == "DEL" {
            &arguments[1..]
        } else {
            &arguments[1..2.min(arguments.len())]
        };
        for key in keys {
            if !declared(script, key, 0) {
                found.push(format!("{command} {key}"));
            }
        }
    }
    found
}

/// The comma-separated arguments up to the call's closing parenthesis.
fn arguments(call: &str) -> Vec<String> {
    let (mut depth, mut current, mut all) = (0_i32, String::new(), Vec::new());
    for c in call.chars() {
        match c {
            '(' | '[' => depth += 1,
            ')' if depth == 0 => break,
            ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                all.push(current.trim().to_owned());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    all.push(current.trim().to_owned());
    all
}

fn declared(script: &str, expression: &str, depth: usize) -> bool {
    let is_identifier = !expression.is_empty()
        && expression
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if expression.starts_with("KEYS[") && expression.ends_with(']') && !expression.contains("..") {
        return true;
    }
    if !is_identifier || depth > 4 {
        return false;
    }
    // Every value the variable is given: assignments `a, b = x, y` and, for a
    // function's parameter, the arguments of every call.
    let mut values = Vec::new();
    for line in script.lines().map(str::trim) {
        let line = line.strip_prefix("local ").unwrap_or(line);
        if let Some(signature) = line.strip_prefix("function ") {
            let (name, parameters) = signature.split_once('(').unwrap_or((signature, ""));
            let parameters: Vec<&str> = parameters
                .trim_end_matches(')')
                .split(',')
                .map(str::trim)
                .collect();
            if let Some(position) = parameters.iter().position(|p| *p == expression) {
                let call = format!("{name}(");
                let calls = script
                    .match_indices(&call)
                    .filter(|(at, _)| !script[..*at].ends_with("function "));
                for (at, _) in calls {
                    if let Some(argument) = arguments(&script[at + call.len()..]).get(position) {
                        values.push(argument.clone());
                    }
                }
            }
            continue;
        }
        let Some((left, right)) = line.split_once(" = ") else {
            continue;
        };
        let names: Vec<&str> = left.split(',').map(str::trim).collect();
        if let Some(position) = names.iter().position(|n| *n == expression) {
            let right: Vec<String> = arguments(right);
            values.push(right.get(position).cloned().unwrap_or_default());
        }
    }
    !values.is_empty()
        && values
            .iter()
            .all(|value| declared(script, value, depth + 1))
}

#[test]
fn every_script_declares_every_key_it_touches() {
    for (name, script) in SCRIPTS {
        assert_eq!(
            undeclared_keys(script),
            Vec::<String>::new(),
            "{name} builds key names"
        );
    }
}

/// The check finds what the scripts did before keys were declared.
#[test]
fn the_check_finds_keys_built_inside_a_script() {
    let built = r"
local digest = redis.call('GET', KEYS[1])
local key = ARGV[1] .. 'digest:' .. digest
redis.call('HSET', key, 'revoked', '1')
redis.call('DEL', KEYS[2], ARGV[1] .. 'id:' .. ARGV[2])
local spent = redis.call('GET', KEYS[1] .. ':' .. 7)
local function expire(record_key) redis.call('PEXPIRE', record_key, 1) end
expire(ARGV[3])
redis.call('PUBLISH', ARGV[4], 'id')
";
    assert_eq!(
        undeclared_keys(built),
        [
            "HSET key",
            "DEL ARGV[1] .. 'id:' .. ARGV[2]",
            "GET KEYS[1] .. ':' .. 7",
            "PEXPIRE record_key",
        ]
    );
}
