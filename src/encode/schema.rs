//! Kafka Connect-style schemas and their two renderings: the Avro schema Confluent's
//! `AvroData` derives from them (with its `connect.*` properties), and the schema part of
//! Connect's `JsonConverter` envelope. Both formats come from one description, so a field can
//! never be in one and not the other. The fixed records under `schemas/` are read back into
//! this model with [`from_avro`].

use std::collections::{HashMap, HashSet};

/// Connect's logical name for fixed-scale decimals; Avro renders it as the `decimal` logical type.
pub(crate) const DECIMAL_NAME: &str = "org.apache.kafka.connect.data.Decimal";
/// Confluent's precision for a Decimal schema that does not state one.
const DEFAULT_DECIMAL_PRECISION: u32 = 64;
/// The name Confluent gives a record whose Connect schema has none.
const UNNAMED_RECORD: &str = "io.confluent.connect.avro.ConnectDefault";

/// A Connect schema: a type plus the metadata Connect carries with it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Schema {
    pub kind: Kind,
    pub optional: bool,
    pub name: Option<String>,
    pub version: Option<u32>,
    pub doc: Option<String>,
    pub parameters: Vec<(String, String)>,
    /// A default value: `source.snapshot`'s `"false"`, and column defaults.
    pub default: Option<DefaultValue>,
}

/// A schema's default value as JSON text, in each rendering's spelling (they differ for
/// bytes: ISO-8859-1 characters in Avro, base64 in Connect JSON).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DefaultValue {
    /// The JSON of the default in an Avro schema (also its `connect.default`).
    pub avro: String,
    /// The JSON of the default in a Connect JSON schema.
    pub connect: String,
}

impl DefaultValue {
    /// A default written the same in both renderings (a number, boolean or string's JSON).
    pub fn json(text: impl Into<String>) -> DefaultValue {
        let text = text.into();
        DefaultValue {
            avro: text.clone(),
            connect: text,
        }
    }

    /// A string default.
    pub fn string(text: &str) -> DefaultValue {
        let mut json = String::new();
        push_json_string(&mut json, text);
        DefaultValue::json(json)
    }
}

/// Connect's schema types.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Boolean,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    String,
    Bytes,
    Array(Box<Schema>),
    /// A map from (required) strings to values of the schema.
    Map(Box<Schema>),
    Struct(Vec<Field>),
}

/// A named field of a struct.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Field {
    pub name: String,
    pub schema: Schema,
}

impl Field {
    /// A field called `name` of type `schema`.
    pub fn new(name: impl Into<String>, schema: Schema) -> Field {
        Field {
            name: name.into(),
            schema,
        }
    }
}

impl Schema {
    /// A required, unnamed schema of `kind`.
    pub fn new(kind: Kind) -> Schema {
        Schema {
            kind,
            optional: false,
            name: None,
            version: None,
            doc: None,
            parameters: Vec::new(),
            default: None,
        }
    }

    /// A required struct called `name`.
    pub fn record(name: impl Into<String>, fields: Vec<Field>) -> Schema {
        Schema::new(Kind::Struct(fields)).named(name)
    }

    /// The same schema, allowing null.
    pub fn optional(mut self) -> Schema {
        self.optional = true;
        self
    }

    /// The same schema with a (logical) name.
    pub fn named(mut self, name: impl Into<String>) -> Schema {
        self.name = Some(name.into());
        self
    }

    /// The same schema with a version.
    pub fn version(mut self, version: u32) -> Schema {
        self.version = Some(version);
        self
    }

    /// The same schema with a doc string.
    pub fn doc(mut self, doc: impl Into<String>) -> Schema {
        self.doc = Some(doc.into());
        self
    }

    /// The same schema with one more parameter.
    pub fn parameter(mut self, key: impl Into<String>, value: impl Into<String>) -> Schema {
        self.parameters.push((key.into(), value.into()));
        self
    }

    fn parameter_value(&self, key: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Writes `text` as a JSON string literal.
pub(crate) fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

// ---------------------------------------------------------------------------------------------
// Avro rendering (Confluent AvroData's conventions)
// ---------------------------------------------------------------------------------------------

/// The Avro schema JSON Confluent's AvroConverter would register for `schema`.
pub(crate) fn to_avro_json(schema: &Schema) -> String {
    let mut out = String::new();
    let mut defined = HashSet::new();
    avro_type(schema, &mut defined, "", &mut out);
    out
}

fn split_full_name(full: &str) -> (&str, &str) {
    match full.rsplit_once('.') {
        Some((namespace, name)) => (namespace, name),
        None => ("", full),
    }
}

/// Optional schemas become unions; a schema with a default puts its own branch first,
/// because an Avro union's default must match the first branch.
fn avro_type(schema: &Schema, defined: &mut HashSet<String>, space: &str, out: &mut String) {
    if !schema.optional {
        avro_base(schema, defined, space, out);
    } else if schema.default.is_some() {
        out.push('[');
        avro_base(schema, defined, space, out);
        out.push_str(",\"null\"]");
    } else {
        out.push_str("[\"null\",");
        avro_base(schema, defined, space, out);
        out.push(']');
    }
}

fn avro_base(schema: &Schema, defined: &mut HashSet<String>, space: &str, out: &mut String) {
    let primitive = match &schema.kind {
        Kind::Struct(fields) => return avro_record(schema, fields, defined, space, out),
        Kind::Array(items) => {
            out.push_str("{\"type\":\"array\",\"items\":");
            avro_type(items, defined, space, out);
            avro_connect_props(schema, out);
            out.push('}');
            return;
        }
        // AvroData writes a map with required string keys as an Avro map.
        Kind::Map(values) => {
            out.push_str("{\"type\":\"map\",\"values\":");
            avro_type(values, defined, space, out);
            avro_connect_props(schema, out);
            out.push('}');
            return;
        }
        Kind::Boolean => "boolean",
        Kind::Int16 | Kind::Int32 => "int",
        Kind::Int64 => "long",
        Kind::Float32 => "float",
        Kind::Float64 => "double",
        Kind::String => "string",
        Kind::Bytes => "bytes",
    };
    let decimal = decimal_scale_precision(schema);
    let plain = schema.kind != Kind::Int16
        && schema.name.is_none()
        && schema.version.is_none()
        && schema.doc.is_none()
        && schema.parameters.is_empty()
        && schema.default.is_none();
    if plain {
        push_json_string(out, primitive);
        return;
    }
    out.push_str("{\"type\":");
    push_json_string(out, primitive);
    if schema.kind == Kind::Int16 {
        out.push_str(",\"connect.type\":\"int16\"");
    }
    if let Some((scale, precision)) = decimal {
        out.push_str(&format!(",\"scale\":{scale},\"precision\":{precision}"));
    }
    avro_connect_props(schema, out);
    if decimal.is_some() {
        out.push_str(",\"logicalType\":\"decimal\"");
    }
    // AvroData gives Connect's own time types their Avro logical types.
    let logical = match schema.name.as_deref() {
        Some("org.apache.kafka.connect.data.Date") => Some("date"),
        Some("org.apache.kafka.connect.data.Time") => Some("time-millis"),
        Some("org.apache.kafka.connect.data.Timestamp") => Some("timestamp-millis"),
        _ => None,
    };
    if let Some(logical) = logical {
        out.push_str(&format!(",\"logicalType\":\"{logical}\""));
    }
    out.push('}');
}

fn decimal_scale_precision(schema: &Schema) -> Option<(u32, u32)> {
    if schema.kind != Kind::Bytes || schema.name.as_deref() != Some(DECIMAL_NAME) {
        return None;
    }
    let scale = schema.parameter_value("scale")?.parse().ok()?;
    let precision = match schema.parameter_value("connect.decimal.precision") {
        Some(text) => text.parse().ok()?,
        None => DEFAULT_DECIMAL_PRECISION,
    };
    Some((scale, precision))
}

fn avro_record(
    schema: &Schema,
    fields: &[Field],
    defined: &mut HashSet<String>,
    space: &str,
    out: &mut String,
) {
    let full = schema.name.as_deref().unwrap_or(UNNAMED_RECORD);
    let (namespace, name) = split_full_name(full);
    if defined.contains(full) {
        // A named type is defined once; later uses refer to it, relative to the enclosing namespace.
        push_json_string(out, if namespace == space { name } else { full });
        return;
    }
    defined.insert(full.to_string());
    out.push_str("{\"type\":\"record\",\"name\":");
    push_json_string(out, name);
    if namespace != space {
        out.push_str(",\"namespace\":");
        push_json_string(out, namespace);
    }
    out.push_str(",\"fields\":[");
    for (index, field) in fields.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        push_json_string(out, &field.name);
        out.push_str(",\"type\":");
        avro_type(&field.schema, defined, namespace, out);
        if let Some(doc) = &field.schema.doc {
            out.push_str(",\"doc\":");
            push_json_string(out, doc);
        }
        if field.schema.optional {
            out.push_str(",\"default\":");
            match &field.schema.default {
                Some(default) => out.push_str(&default.avro),
                None => out.push_str("null"),
            }
        } else if let Some(default) = &field.schema.default {
            out.push_str(",\"default\":");
            out.push_str(&default.avro);
        }
        out.push('}');
    }
    out.push(']');
    avro_connect_props(schema, out);
    out.push('}');
}

/// AvroData's `connect.*` properties, in the order it adds them.
fn avro_connect_props(schema: &Schema, out: &mut String) {
    if let Some(doc) = &schema.doc {
        out.push_str(",\"connect.doc\":");
        push_json_string(out, doc);
    }
    if let Some(version) = schema.version {
        out.push_str(&format!(",\"connect.version\":{version}"));
    }
    if !schema.parameters.is_empty() {
        out.push_str(",\"connect.parameters\":");
        push_parameters(schema, out);
    }
    if let Some(default) = &schema.default {
        out.push_str(",\"connect.default\":");
        out.push_str(&default.avro);
    }
    if let Some(name) = &schema.name {
        out.push_str(",\"connect.name\":");
        push_json_string(out, name);
    }
}

fn push_parameters(schema: &Schema, out: &mut String) {
    out.push('{');
    for (index, (key, value)) in schema.parameters.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        push_json_string(out, key);
        out.push(':');
        push_json_string(out, value);
    }
    out.push('}');
}

// ---------------------------------------------------------------------------------------------
// Connect JSON rendering (JsonConverter with schemas.enable=true)
// ---------------------------------------------------------------------------------------------

/// The `schema` part JsonConverter writes for `schema`.
pub(crate) fn to_connect_json(schema: &Schema) -> String {
    let mut out = String::new();
    connect_type(schema, None, &mut out);
    out
}

fn connect_type(schema: &Schema, field: Option<&str>, out: &mut String) {
    let type_name = match &schema.kind {
        Kind::Boolean => "boolean",
        Kind::Int16 => "int16",
        Kind::Int32 => "int32",
        Kind::Int64 => "int64",
        Kind::Float32 => "float",
        Kind::Float64 => "double",
        Kind::String => "string",
        Kind::Bytes => "bytes",
        Kind::Array(_) => "array",
        Kind::Map(_) => "map",
        Kind::Struct(_) => "struct",
    };
    out.push_str("{\"type\":");
    push_json_string(out, type_name);
    match &schema.kind {
        Kind::Array(items) => {
            out.push_str(",\"items\":");
            connect_type(items, None, out);
        }
        Kind::Map(values) => {
            out.push_str(",\"keys\":");
            connect_type(&Schema::new(Kind::String), None, out);
            out.push_str(",\"values\":");
            connect_type(values, None, out);
        }
        Kind::Struct(fields) => {
            out.push_str(",\"fields\":[");
            for (index, inner) in fields.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                connect_type(&inner.schema, Some(&inner.name), out);
            }
            out.push(']');
        }
        _ => {}
    }
    out.push_str(if schema.optional {
        ",\"optional\":true"
    } else {
        ",\"optional\":false"
    });
    if let Some(name) = &schema.name {
        out.push_str(",\"name\":");
        push_json_string(out, name);
    }
    if let Some(version) = schema.version {
        out.push_str(&format!(",\"version\":{version}"));
    }
    if let Some(doc) = &schema.doc {
        out.push_str(",\"doc\":");
        push_json_string(out, doc);
    }
    if !schema.parameters.is_empty() {
        out.push_str(",\"parameters\":");
        push_parameters(schema, out);
    }
    if let Some(default) = &schema.default {
        out.push_str(",\"default\":");
        out.push_str(&default.connect);
    }
    if let Some(field) = field {
        out.push_str(",\"field\":");
        push_json_string(out, field);
    }
    out.push('}');
}

// ---------------------------------------------------------------------------------------------
// Reading the fixed `.avsc` files back (AvroData's Avro → Connect direction)
// ---------------------------------------------------------------------------------------------

/// Reads an Avro schema written with Confluent's `connect.*` properties into the model.
/// Supports what the fixed schemas use: records, arrays, primitives, `null` unions and
/// references to records defined earlier.
pub(crate) fn from_avro(text: &str) -> Result<Schema, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    parse_type(&value, "", &mut HashMap::new())
}

/// Records defined so far, by full name.
type Named = HashMap<String, Schema>;

fn parse_type(value: &serde_json::Value, space: &str, named: &mut Named) -> Result<Schema, String> {
    use serde_json::Value as Json;
    match value {
        Json::String(name) => match primitive_kind(name) {
            Ok(kind) => Ok(Schema::new(kind)),
            Err(error) => {
                let full = if name.contains('.') || space.is_empty() {
                    name.clone()
                } else {
                    format!("{space}.{name}")
                };
                named
                    .get(&full)
                    .or_else(|| named.get(name))
                    .cloned()
                    .ok_or(error)
            }
        },
        Json::Array(branches) => {
            let inner: Vec<&Json> = branches.iter().filter(|b| *b != "null").collect();
            match inner.as_slice() {
                [only] if branches.len() == 2 => Ok(parse_type(only, space, named)?.optional()),
                _ => Err(format!("unsupported union {value}")),
            }
        }
        Json::Object(map) => {
            let type_name = map
                .get("type")
                .and_then(Json::as_str)
                .ok_or_else(|| format!("no \"type\" in {value}"))?;
            let mut defines = None;
            let mut schema = match type_name {
                "record" => {
                    let name = map
                        .get("name")
                        .and_then(Json::as_str)
                        .ok_or_else(|| format!("record without a name: {value}"))?;
                    let namespace = map.get("namespace").and_then(Json::as_str).unwrap_or(space);
                    let full = if namespace.is_empty() {
                        name.to_string()
                    } else {
                        format!("{namespace}.{name}")
                    };
                    let fields = map
                        .get("fields")
                        .and_then(Json::as_array)
                        .ok_or_else(|| format!("record {full} without fields"))?
                        .iter()
                        .map(|field| parse_field(field, namespace, named))
                        .collect::<Result<Vec<_>, _>>()?;
                    defines = Some(full.clone());
                    Schema::record(full, fields)
                }
                "array" => {
                    let items = map
                        .get("items")
                        .ok_or_else(|| format!("array without items: {value}"))?;
                    Schema::new(Kind::Array(Box::new(parse_type(items, space, named)?)))
                }
                "int" if map.get("connect.type").and_then(Json::as_str) == Some("int16") => {
                    Schema::new(Kind::Int16)
                }
                other => Schema::new(primitive_kind(other)?),
            };
            if let Some(name) = map.get("connect.name").and_then(Json::as_str) {
                schema.name = Some(name.to_string());
            }
            if let Some(version) = map.get("connect.version").and_then(Json::as_u64) {
                schema.version =
                    Some(u32::try_from(version).map_err(|_| format!("bad version {version}"))?);
            }
            if let Some(doc) = map.get("connect.doc").and_then(Json::as_str) {
                schema.doc = Some(doc.to_string());
            }
            if let Some(parameters) = map.get("connect.parameters").and_then(Json::as_object) {
                for (key, parameter) in parameters {
                    let parameter = parameter
                        .as_str()
                        .ok_or_else(|| format!("parameter {key} is not a string"))?;
                    schema.parameters.push((key.clone(), parameter.to_string()));
                }
            }
            if let Some(default) = map.get("connect.default") {
                let default = default
                    .as_str()
                    .ok_or_else(|| format!("unsupported default {default}"))?;
                schema.default = Some(DefaultValue::string(default));
            }
            if let Some(full) = defines {
                named.insert(full, schema.clone());
            }
            Ok(schema)
        }
        other => Err(format!("unsupported schema {other}")),
    }
}

fn parse_field(value: &serde_json::Value, space: &str, named: &mut Named) -> Result<Field, String> {
    let name = value
        .get("name")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| format!("field without a name: {value}"))?;
    let schema = value
        .get("type")
        .ok_or_else(|| format!("field {name} without a type"))?;
    Ok(Field::new(name, parse_type(schema, space, named)?))
}

fn primitive_kind(name: &str) -> Result<Kind, String> {
    Ok(match name {
        "boolean" => Kind::Boolean,
        "int" => Kind::Int32,
        "long" => Kind::Int64,
        "float" => Kind::Float32,
        "double" => Kind::Float64,
        "string" => Kind::String,
        "bytes" => Kind::Bytes,
        other => return Err(format!("unsupported type {other:?}")),
    })
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

/// A valid Avro name: characters other than `[A-Za-z0-9_]` become `_` and a leading digit gets
/// a `_` in front (Debezium's `schema.name.adjustment.mode = avro`).
pub(crate) fn avro_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.chars().next().is_none_or(|c| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    out
}

/// A valid Avro full name: each dot-separated part made a valid name. Debezium only adjusts
/// the first part's leading digit; adjusting every part keeps names like `shop.public.1t`
/// parseable by strict Avro libraries.
pub(crate) fn avro_full_name(name: &str) -> String {
    name.split('.').map(avro_name).collect::<Vec<_>>().join(".")
}

/// A legal Kafka topic name: characters other than `[A-Za-z0-9._-]` become `_`, as Debezium's
/// topic naming strategies do.
pub(crate) fn topic_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int_field(name: &str) -> Field {
        Field::new(name, Schema::new(Kind::Int32))
    }

    #[test]
    fn records_are_defined_once_and_referenced_relative_to_their_namespace() {
        let decimal = Schema::record(
            "io.debezium.data.VariableScaleDecimal",
            vec![
                int_field("scale"),
                Field::new("value", Schema::new(Kind::Bytes)),
            ],
        )
        .version(1)
        .doc("Variable scaled decimal");
        let value = Schema::record(
            "a.b.c.Value",
            vec![
                Field::new("x", decimal.clone().optional()),
                Field::new("y", decimal),
            ],
        );
        let envelope = Schema::record(
            "a.b.c.Envelope",
            vec![
                Field::new("before", value.clone().optional()),
                Field::new("after", value.optional()),
            ],
        )
        .version(2);
        assert_eq!(
            to_avro_json(&envelope),
            concat!(
                r#"{"type":"record","name":"Envelope","namespace":"a.b.c","fields":["#,
                r#"{"name":"before","type":["null",{"type":"record","name":"Value","fields":["#,
                r#"{"name":"x","type":["null",{"type":"record","name":"VariableScaleDecimal","#,
                r#""namespace":"io.debezium.data","fields":[{"name":"scale","type":"int"},"#,
                r#"{"name":"value","type":"bytes"}],"connect.doc":"Variable scaled decimal","#,
                r#""connect.version":1,"connect.name":"io.debezium.data.VariableScaleDecimal"}],"#,
                r#""doc":"Variable scaled decimal","default":null},"#,
                r#"{"name":"y","type":"io.debezium.data.VariableScaleDecimal","#,
                r#""doc":"Variable scaled decimal"}],"connect.name":"a.b.c.Value"}],"default":null},"#,
                r#"{"name":"after","type":["null","Value"],"default":null}],"#,
                r#""connect.version":2,"connect.name":"a.b.c.Envelope"}"#
            )
        );
    }

    #[test]
    fn primitives_carry_connect_properties() {
        let decimal = Schema::new(Kind::Bytes)
            .named(DECIMAL_NAME)
            .version(1)
            .parameter("scale", "2")
            .parameter("connect.decimal.precision", "10");
        assert_eq!(
            to_avro_json(&decimal),
            concat!(
                r#"{"type":"bytes","scale":2,"precision":10,"connect.version":1,"#,
                r#""connect.parameters":{"scale":"2","connect.decimal.precision":"10"},"#,
                r#""connect.name":"org.apache.kafka.connect.data.Decimal","logicalType":"decimal"}"#
            )
        );
        assert_eq!(
            to_avro_json(&Schema::new(Kind::Int16)),
            r#"{"type":"int","connect.type":"int16"}"#
        );
        let snapshot = Schema::new(Kind::String)
            .named("io.debezium.data.Enum")
            .version(1)
            .parameter("allowed", "true,false")
            .optional();
        let mut with_default = snapshot.clone();
        with_default.default = Some(DefaultValue::string("false"));
        let record = Schema::record(
            "r",
            vec![
                Field::new("a", snapshot),
                Field::new("b", with_default),
                Field::new(
                    "c",
                    Schema::new(Kind::Array(Box::new(Schema::new(Kind::Int64).optional()))),
                ),
            ],
        );
        assert_eq!(
            to_avro_json(&record),
            concat!(
                r#"{"type":"record","name":"r","fields":["#,
                r#"{"name":"a","type":["null",{"type":"string","connect.version":1,"#,
                r#""connect.parameters":{"allowed":"true,false"},"connect.name":"io.debezium.data.Enum"}],"default":null},"#,
                r#"{"name":"b","type":[{"type":"string","connect.version":1,"#,
                r#""connect.parameters":{"allowed":"true,false"},"connect.default":"false","#,
                r#""connect.name":"io.debezium.data.Enum"},"null"],"default":"false"},"#,
                r#"{"name":"c","type":{"type":"array","items":["null","long"]}}],"connect.name":"r"}"#
            )
        );
    }

    #[test]
    fn connect_json_follows_json_converter_key_order() {
        let mut snapshot = Schema::new(Kind::String)
            .named("io.debezium.data.Enum")
            .version(1)
            .parameter("allowed", "true,false")
            .optional();
        snapshot.default = Some(DefaultValue::string("false"));
        let record = Schema::record(
            "k.Key",
            vec![
                Field::new("id", Schema::new(Kind::Int16)),
                Field::new("snapshot", snapshot),
                Field::new(
                    "tags",
                    Schema::new(Kind::Array(Box::new(Schema::new(Kind::String).optional())))
                        .optional(),
                ),
                Field::new(
                    "pairs",
                    Schema::new(Kind::Map(Box::new(Schema::new(Kind::String).optional())))
                        .optional(),
                ),
            ],
        );
        assert_eq!(
            to_connect_json(&record),
            concat!(
                r#"{"type":"struct","fields":[{"type":"int16","optional":false,"field":"id"},"#,
                r#"{"type":"string","optional":true,"name":"io.debezium.data.Enum","version":1,"#,
                r#""parameters":{"allowed":"true,false"},"default":"false","field":"snapshot"},"#,
                r#"{"type":"array","items":{"type":"string","optional":true},"optional":true,"field":"tags"},"#,
                r#"{"type":"map","keys":{"type":"string","optional":false},"#,
                r#""values":{"type":"string","optional":true},"optional":true,"field":"pairs"}],"#,
                r#""optional":false,"name":"k.Key"}"#
            )
        );
    }

    #[test]
    fn avro_json_reads_back_into_the_same_model() {
        let mut snapshot = Schema::new(Kind::String)
            .named("io.debezium.data.Enum")
            .version(1)
            .parameter("allowed", "a,b")
            .optional();
        snapshot.default = Some(DefaultValue::string("a"));
        let inner = Schema::record("x.y.Inner", vec![int_field("n")]).version(3);
        let record = Schema::record(
            "x.y.Outer",
            vec![
                Field::new("small", Schema::new(Kind::Int16)),
                Field::new("snapshot", snapshot),
                Field::new("inner", inner.optional()),
                Field::new(
                    "list",
                    Schema::new(Kind::Array(Box::new(Schema::new(Kind::Float64).optional())))
                        .optional(),
                ),
                Field::new("flag", Schema::new(Kind::Boolean).doc("d")),
            ],
        );
        assert_eq!(from_avro(&to_avro_json(&record)), Ok(record));
        assert!(from_avro(r#"{"type":"fixed","size":3}"#).is_err());
        assert!(from_avro(r#"["null","int","long"]"#).is_err());
    }

    #[test]
    fn strings_are_escaped() {
        let mut out = String::new();
        push_json_string(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
    }

    #[test]
    fn names_are_made_valid() {
        assert_eq!(avro_name("order id"), "order_id");
        assert_eq!(avro_name("1st"), "_1st");
        assert_eq!(avro_name("naïve-col"), "na_ve_col");
        assert_eq!(avro_name(""), "_");
        assert_eq!(avro_name("ok_Name9"), "ok_Name9");
        assert_eq!(
            avro_full_name("shop-1.public.2024 sales.Value"),
            "shop_1.public._2024_sales.Value"
        );
        assert_eq!(topic_name("shop.public.my table$"), "shop.public.my_table_");
        assert_eq!(topic_name("a-b.c_d"), "a-b.c_d");
    }
}
