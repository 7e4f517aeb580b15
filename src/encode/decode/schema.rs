//! Writer schemas as a small tree: Avro schema JSON with Confluent's `connect.*` properties, or
//! the `schema` half of a Kafka Connect JSON envelope. Parsed by hand with serde_json because
//! `apache_avro::Schema` drops the custom properties of primitive types, which carry the
//! semantic names and parameters the sink needs.
//!
//! Both formats become the same tree; only Avro uses the union branch order.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value as Json};

/// A writer schema node.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Schema {
    /// The physical type.
    pub kind: Kind,
    /// `connect.name` (Avro) or `name` (Connect JSON): the semantic name, e.g.
    /// `io.debezium.time.Date`; for records also their full Avro name.
    pub name: Option<String>,
    /// `connect.type = int16` (Avro) or `int16`/`int8` (JSON).
    pub int16: bool,
    /// `connect.parameters` / `parameters`.
    pub parameters: Vec<(String, String)>,
    /// Avro `logicalType: decimal`: (scale, precision).
    pub decimal: Option<(i64, Option<u64>)>,
}

/// Physical types.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Kind {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Array(Box<Schema>),
    /// A map from strings to values of the schema.
    Map(Box<Schema>),
    Record(Arc<Record>),
    /// Avro union branches in order; Connect JSON's optional `T` is `[null, T]`.
    Union(Vec<Schema>),
}

/// A record (Avro) or struct (Connect JSON).
#[derive(Debug, PartialEq)]
pub(super) struct Record {
    /// Full name; empty for an unnamed Connect struct.
    pub name: String,
    /// Fields in writer order.
    pub fields: Vec<(String, Schema)>,
}

impl Schema {
    fn new(kind: Kind) -> Schema {
        Schema {
            kind,
            name: None,
            int16: false,
            parameters: Vec::new(),
            decimal: None,
        }
    }

    /// The value of parameter `key`.
    pub fn parameter(&self, key: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The record this schema is, if it is one.
    pub fn record(&self) -> Option<&Arc<Record>> {
        match &self.kind {
            Kind::Record(record) => Some(record),
            _ => None,
        }
    }

    /// For `[null, T]` / `[T, null]`: the null branch index, the value branch index and `T`.
    pub fn nullable(&self) -> Option<(i64, i64, &Schema)> {
        let Kind::Union(branches) = &self.kind else {
            return None;
        };
        match branches.as_slice() {
            [null, value] if null.kind == Kind::Null && value.kind != Kind::Null => {
                Some((0, 1, value))
            }
            [value, null] if null.kind == Kind::Null && value.kind != Kind::Null => {
                Some((1, 0, value))
            }
            _ => None,
        }
    }

    /// The fewest bytes an Avro datum of this schema takes, to bound array block counts.
    pub fn min_size(&self) -> usize {
        match &self.kind {
            Kind::Null => 0,
            Kind::Float => 4,
            Kind::Double => 8,
            Kind::Record(record) => record.fields.iter().map(|(_, f)| f.min_size()).sum(),
            _ => 1,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Avro schema JSON
// ---------------------------------------------------------------------------------------------

/// Parses an Avro schema as the registry returns it.
pub(super) fn parse_avro(text: &str) -> Result<Schema, String> {
    let json: Json = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let mut names = HashMap::new();
    avro_type(&json, "", &mut names)
}

/// Named records seen so far, by full name. A record is only registered once its fields are
/// parsed, so a self-referencing record is refused instead of looping.
type Names = HashMap<String, Arc<Record>>;

fn avro_type(json: &Json, space: &str, names: &mut Names) -> Result<Schema, String> {
    match json {
        Json::String(name) => avro_named(name, space, names),
        Json::Array(branches) => branches
            .iter()
            .map(|branch| avro_type(branch, space, names))
            .collect::<Result<Vec<_>, _>>()
            .map(|branches| Schema::new(Kind::Union(branches))),
        Json::Object(map) => match map.get("type") {
            Some(Json::String(type_name)) => avro_object(type_name, map, space, names),
            Some(nested @ (Json::Object(_) | Json::Array(_))) => avro_type(nested, space, names),
            _ => Err(format!("no usable \"type\" in {json}")),
        },
        other => Err(format!("unsupported schema {other}")),
    }
}

fn avro_named(name: &str, space: &str, names: &Names) -> Result<Schema, String> {
    if let Some(kind) = avro_primitive(name) {
        return Ok(Schema::new(kind));
    }
    let record = if name.contains('.') || space.is_empty() {
        names.get(name)
    } else {
        names
            .get(&format!("{space}.{name}"))
            .or_else(|| names.get(name))
    };
    let record = record.ok_or_else(|| format!("unknown or unsupported type {name:?}"))?;
    let mut schema = Schema::new(Kind::Record(Arc::clone(record)));
    schema.name = Some(record.name.clone());
    Ok(schema)
}

fn avro_primitive(name: &str) -> Option<Kind> {
    Some(match name {
        "null" => Kind::Null,
        "boolean" => Kind::Boolean,
        "int" => Kind::Int,
        "long" => Kind::Long,
        "float" => Kind::Float,
        "double" => Kind::Double,
        "bytes" => Kind::Bytes,
        "string" => Kind::String,
        _ => return None,
    })
}

fn avro_object(
    type_name: &str,
    map: &Map<String, Json>,
    space: &str,
    names: &mut Names,
) -> Result<Schema, String> {
    let mut schema = match type_name {
        "record" | "error" => return avro_record(map, space, names),
        "array" => {
            let items = map.get("items").ok_or("array without \"items\"")?;
            Schema::new(Kind::Array(Box::new(avro_type(items, space, names)?)))
        }
        "map" => {
            let values = map.get("values").ok_or("map without \"values\"")?;
            Schema::new(Kind::Map(Box::new(avro_type(values, space, names)?)))
        }
        other => match avro_primitive(other) {
            Some(kind) => Schema::new(kind),
            None => return Err(format!("unsupported Avro type {other:?}")),
        },
    };
    schema.int16 = map.get("connect.type").and_then(Json::as_str) == Some("int16");
    if map.get("logicalType").and_then(Json::as_str) == Some("decimal") {
        let scale = map.get("scale").map_or(Some(0), Json::as_i64);
        let precision = map.get("precision").and_then(Json::as_u64);
        schema.decimal = Some((scale.ok_or("decimal with a non-integer scale")?, precision));
    }
    connect_properties(&mut schema, map, "connect.name", "connect.parameters")?;
    Ok(schema)
}

fn avro_record(map: &Map<String, Json>, space: &str, names: &mut Names) -> Result<Schema, String> {
    let name = map
        .get("name")
        .and_then(Json::as_str)
        .ok_or("record without a name")?;
    let full = match (
        name.rsplit_once('.'),
        map.get("namespace").and_then(Json::as_str),
    ) {
        (Some(_), _) => name.to_string(),
        (None, Some(namespace)) if !namespace.is_empty() => format!("{namespace}.{name}"),
        (None, Some(_)) => name.to_string(),
        (None, None) if space.is_empty() => name.to_string(),
        (None, None) => format!("{space}.{name}"),
    };
    let namespace = full.rsplit_once('.').map_or("", |(namespace, _)| namespace);
    let fields = map
        .get("fields")
        .and_then(Json::as_array)
        .ok_or_else(|| format!("record {full} without fields"))?
        .iter()
        .map(|field| {
            let field_name = field
                .get("name")
                .and_then(Json::as_str)
                .ok_or_else(|| format!("a field of {full} without a name"))?;
            let field_type = field
                .get("type")
                .ok_or_else(|| format!("field {full}.{field_name} without a type"))?;
            Ok((
                field_name.to_string(),
                avro_type(field_type, namespace, names)?,
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let record = Arc::new(Record {
        name: full.clone(),
        fields,
    });
    names.insert(full.clone(), Arc::clone(&record));
    let mut schema = Schema::new(Kind::Record(record));
    schema.name = Some(full);
    connect_properties(&mut schema, map, "connect.name", "connect.parameters")?;
    Ok(schema)
}

/// Reads the semantic name and the parameters from the properties called `name` / `parameters`.
fn connect_properties(
    schema: &mut Schema,
    map: &Map<String, Json>,
    name: &str,
    parameters: &str,
) -> Result<(), String> {
    if let Some(name) = map.get(name).and_then(Json::as_str) {
        schema.name = Some(name.to_string());
    }
    if let Some(parameters) = map.get(parameters).and_then(Json::as_object) {
        for (key, value) in parameters {
            let value = value
                .as_str()
                .ok_or_else(|| format!("parameter {key:?} is not a string"))?;
            schema.parameters.push((key.clone(), value.to_string()));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Kafka Connect JSON schemas
// ---------------------------------------------------------------------------------------------

/// Parses the `schema` half of a JsonConverter envelope.
pub(super) fn parse_connect(bytes: &[u8]) -> Result<Schema, String> {
    let json: Json = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    connect_type(&json)
}

fn connect_type(json: &Json) -> Result<Schema, String> {
    let map = json
        .as_object()
        .ok_or_else(|| format!("a schema must be an object, got {json}"))?;
    let type_name = map
        .get("type")
        .and_then(Json::as_str)
        .ok_or_else(|| format!("no \"type\" in {json}"))?;
    let mut schema = match type_name {
        "boolean" => Schema::new(Kind::Boolean),
        "int8" | "int16" => Schema {
            int16: true,
            ..Schema::new(Kind::Int)
        },
        "int32" => Schema::new(Kind::Int),
        "int64" => Schema::new(Kind::Long),
        "float" => Schema::new(Kind::Float),
        "double" => Schema::new(Kind::Double),
        "bytes" => Schema::new(Kind::Bytes),
        "string" => Schema::new(Kind::String),
        "array" => {
            let items = map.get("items").ok_or("array without \"items\"")?;
            Schema::new(Kind::Array(Box::new(connect_type(items)?)))
        }
        "map" => {
            let keys = connect_type(map.get("keys").ok_or("map without \"keys\"")?)?;
            if keys.kind != Kind::String {
                return Err(format!("map keys must be required strings, got {keys:?}"));
            }
            let values = map.get("values").ok_or("map without \"values\"")?;
            Schema::new(Kind::Map(Box::new(connect_type(values)?)))
        }
        "struct" => {
            let fields = map
                .get("fields")
                .and_then(Json::as_array)
                .ok_or("struct without \"fields\"")?
                .iter()
                .map(|field| {
                    let name = field
                        .get("field")
                        .and_then(Json::as_str)
                        .ok_or_else(|| format!("struct field without a name: {field}"))?;
                    Ok((name.to_string(), connect_type(field)?))
                })
                .collect::<Result<Vec<_>, String>>()?;
            let name = map.get("name").and_then(Json::as_str).unwrap_or_default();
            Schema::new(Kind::Record(Arc::new(Record {
                name: name.to_string(),
                fields,
            })))
        }
        other => return Err(format!("unsupported Connect type {other:?}")),
    };
    connect_properties(&mut schema, map, "name", "parameters")?;
    if map.get("optional").and_then(Json::as_bool) == Some(true) {
        schema = Schema::new(Kind::Union(vec![Schema::new(Kind::Null), schema]));
    }
    Ok(schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_records_are_resolved_relative_to_their_namespace() {
        let text = r#"{"type":"record","name":"Envelope","namespace":"shop.public.t","fields":[
            {"name":"before","type":["null",{"type":"record","name":"Value","fields":[
                {"name":"n","type":{"type":"record","name":"VariableScaleDecimal",
                  "namespace":"io.debezium.data","fields":[{"name":"scale","type":"int"},
                  {"name":"value","type":"bytes"}],"connect.name":"io.debezium.data.VariableScaleDecimal"}},
                {"name":"m","type":"io.debezium.data.VariableScaleDecimal"}]}],"default":null},
            {"name":"after","type":["null","Value"],"default":null}]}"#;
        let schema = parse_avro(text).unwrap();
        let envelope = schema.record().unwrap();
        assert_eq!(envelope.name, "shop.public.t.Envelope");
        let (_, _, before) = envelope.fields[0].1.nullable().unwrap();
        let (_, _, after) = envelope.fields[1].1.nullable().unwrap();
        assert!(Arc::ptr_eq(
            before.record().unwrap(),
            after.record().unwrap()
        ));
        let value = before.record().unwrap();
        assert_eq!(value.name, "shop.public.t.Value");
        assert_eq!(value.fields[0].1, value.fields[1].1);
        assert_eq!(
            value.fields[0].1.name.as_deref(),
            Some("io.debezium.data.VariableScaleDecimal")
        );
    }

    #[test]
    fn primitive_properties_are_kept() {
        let schema = parse_avro(
            r#"{"type":"bytes","scale":2,"precision":10,"connect.version":1,
               "connect.parameters":{"scale":"2","connect.decimal.precision":"10"},
               "connect.name":"org.apache.kafka.connect.data.Decimal","logicalType":"decimal"}"#,
        )
        .unwrap();
        assert_eq!(schema.kind, Kind::Bytes);
        assert_eq!(schema.decimal, Some((2, Some(10))));
        assert_eq!(schema.parameter("scale"), Some("2"));
        let int16 = parse_avro(r#"{"type":"int","connect.type":"int16"}"#).unwrap();
        assert!(int16.int16);
    }

    #[test]
    fn unsupported_or_broken_schemas_are_errors() {
        for bad in [
            "",
            "{",
            r#""fixed""#,
            r#"{"type":"map"}"#,
            r#"{"type":"enum","name":"E","symbols":["A"]}"#,
            r#"{"type":"record","name":"R","fields":[{"name":"me","type":"R"}]}"#,
            r#"{"type":"record","fields":[]}"#,
            r#"{"type":"array"}"#,
            r#"{"type":"string","connect.parameters":{"length":3}}"#,
            "42",
        ] {
            assert!(parse_avro(bad).is_err(), "{bad}");
        }
        for bad in [
            r#"{"type":"map","optional":false}"#,
            r#"{"type":"map","keys":{"type":"int32"},"values":{"type":"string"}}"#,
            r#"{"type":"struct","fields":[{"type":"int32"}]}"#,
            r#"[]"#,
        ] {
            assert!(parse_connect(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn connect_optional_becomes_a_null_union() {
        let schema = parse_connect(
            br#"{"type":"struct","fields":[{"type":"int16","optional":true,"field":"a"}],"optional":false,"name":"x.Value"}"#,
        )
        .unwrap();
        let record = schema.record().unwrap();
        assert_eq!(record.name, "x.Value");
        let (null, value, inner) = record.fields[0].1.nullable().unwrap();
        assert_eq!((null, value), (0, 1));
        assert!(inner.int16);
    }
}
