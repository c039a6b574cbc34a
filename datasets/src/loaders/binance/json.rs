//! The borrowed JSON model of Binance messages: one parse per line, strings borrowed from the
//! line, level arrays as `[price, qty]` pairs. Deserialising never fails on a value's *type*
//! ([`Val`] records what it saw), so the loader can name the offending key path
//! (`data.b[3].price`) instead of serde reporting a column without one; only JSON syntax errors
//! (bad or truncated lines) come from serde.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::marker::PhantomData;

/// A JSON value as the loader needs it: strings borrowed from the line, arrays kept as
/// `[price, qty]` pairs, objects only noted. Deserialising a `Val` never fails on shape, so a
/// wrong type is reported by the loader with its key path rather than by serde without one.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Val<'a> {
    Null,
    Str(&'a str),
    /// A string with escape sequences (cannot be borrowed; never valid in Binance fields).
    Escaped,
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    /// An array; each element as a pair (see [`Pair::len`] for elements that are not pairs).
    Levels(Vec<Pair<'a>>),
    Object,
}

impl Val<'_> {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Val::Null => "null",
            Val::Str(_) => "a string",
            Val::Escaped => "a string with escapes",
            Val::U64(_) | Val::I64(_) => "an integer",
            Val::F64(_) => "a non-integer number",
            Val::Bool(_) => "a boolean",
            Val::Levels(_) => "an array",
            Val::Object => "an object",
        }
    }
}

/// One element of a level array: `[price, qty]`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Pair<'a> {
    pub price: Val<'a>,
    pub qty: Val<'a>,
    /// Number of elements if the element is an array, `None` if it is not an array.
    pub len: Option<u32>,
}

macro_rules! scalar_visits {
    ($wrap:expr) => {
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> std::result::Result<Self::Value, E> {
            Ok($wrap(Val::Str(v)))
        }
        fn visit_str<E: de::Error>(self, _: &str) -> std::result::Result<Self::Value, E> {
            Ok($wrap(Val::Escaped))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Self::Value, E> {
            Ok($wrap(Val::U64(v)))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Self::Value, E> {
            Ok($wrap(if v >= 0 { Val::U64(v as u64) } else { Val::I64(v) }))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Self::Value, E> {
            Ok($wrap(Val::F64(v)))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Self::Value, E> {
            Ok($wrap(Val::Bool(v)))
        }
        fn visit_unit<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
            Ok($wrap(Val::Null))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<Self::Value, A::Error> {
            while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok($wrap(Val::Object))
        }
    };
}

struct ValVisitor<'a>(PhantomData<&'a ()>);
impl<'de: 'a, 'a> Visitor<'de> for ValVisitor<'a> {
    type Value = Val<'a>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    scalar_visits!(|v| v);
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> std::result::Result<Val<'a>, A::Error> {
        let mut v = Vec::with_capacity(a.size_hint().unwrap_or(16));
        while let Some(p) = a.next_element::<Pair<'a>>()? {
            v.push(p);
        }
        Ok(Val::Levels(v))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Val<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(ValVisitor(PhantomData))
    }
}

struct PairVisitor<'a>(PhantomData<&'a ()>);
impl<'de: 'a, 'a> Visitor<'de> for PairVisitor<'a> {
    type Value = Pair<'a>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a [price, qty] pair")
    }
    scalar_visits!(|_| Pair { price: Val::Null, qty: Val::Null, len: None });
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> std::result::Result<Pair<'a>, A::Error> {
        let price = a.next_element::<Val<'a>>()?;
        let qty = if price.is_some() { a.next_element::<Val<'a>>()? } else { None };
        let mut len = price.is_some() as u32 + qty.is_some() as u32;
        if qty.is_some() {
            while a.next_element::<IgnoredAny>()?.is_some() {
                len += 1;
            }
        }
        Ok(Pair { price: price.unwrap_or(Val::Null), qty: qty.unwrap_or(Val::Null), len: Some(len) })
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Pair<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(PairVisitor(PhantomData))
    }
}

/// The `data` object of a combined-stream message (union of the fields of every stream kind;
/// `b`/`a` are level arrays in depth updates, strings in bookTicker, an id in aggTrade).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Data<'a> {
    #[serde(borrow, default)]
    pub e: Option<Val<'a>>,
    #[serde(borrow, default, rename = "E")]
    pub event_time: Option<Val<'a>>,
    #[serde(borrow, default, rename = "T")]
    pub transact_time: Option<Val<'a>>,
    #[serde(borrow, default)]
    pub s: Option<Val<'a>>,
    #[serde(borrow, default, rename = "U")]
    pub first_id: Option<Val<'a>>,
    #[serde(borrow, default)]
    pub u: Option<Val<'a>>,
    #[serde(borrow, default)]
    pub pu: Option<Val<'a>>,
    #[serde(borrow, default)]
    pub b: Option<Val<'a>>,
    #[serde(borrow, default)]
    pub a: Option<Val<'a>>,
    #[serde(borrow, default, rename = "B")]
    pub bid_qty: Option<Val<'a>>,
    #[serde(borrow, default, rename = "A")]
    pub ask_qty: Option<Val<'a>>,
    #[serde(borrow, default)]
    pub t: Option<Val<'a>>,
    #[serde(borrow, default)]
    pub p: Option<Val<'a>>,
    #[serde(borrow, default)]
    pub q: Option<Val<'a>>,
    #[serde(borrow, default)]
    pub m: Option<Val<'a>>,
}

/// `data` as found: an object, or the kind of the non-object value.
// Built on the stack once per line and borrowed from there: boxing would add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum DataField<'a> {
    Obj(Data<'a>),
    Not(&'static str),
}

struct DataVisitor<'a>(PhantomData<&'a ()>);
impl<'de: 'a, 'a> Visitor<'de> for DataVisitor<'a> {
    type Value = DataField<'a>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, m: A) -> std::result::Result<DataField<'a>, A::Error> {
        Data::deserialize(de::value::MapAccessDeserializer::new(m)).map(DataField::Obj)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> std::result::Result<DataField<'a>, A::Error> {
        while a.next_element::<IgnoredAny>()?.is_some() {}
        Ok(DataField::Not("an array"))
    }
    fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> std::result::Result<DataField<'a>, E> {
        Ok(DataField::Not("a string"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> std::result::Result<DataField<'a>, E> {
        Ok(DataField::Not("a string"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> std::result::Result<DataField<'a>, E> {
        Ok(DataField::Not("a number"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> std::result::Result<DataField<'a>, E> {
        Ok(DataField::Not("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> std::result::Result<DataField<'a>, E> {
        Ok(DataField::Not("a number"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> std::result::Result<DataField<'a>, E> {
        Ok(DataField::Not("a boolean"))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for DataField<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(DataVisitor(PhantomData))
    }
}

/// One message line's JSON: a combined-stream envelope, a REST depth snapshot, or a control
/// reply (`{"result": null, "id": 1}`).
#[derive(Debug, Deserialize)]
pub(crate) struct Msg<'a> {
    #[serde(borrow, default)]
    pub stream: Option<Val<'a>>,
    #[serde(borrow, default)]
    pub data: Option<DataField<'a>>,
    #[serde(borrow, default, rename = "lastUpdateId")]
    pub last_update_id: Option<Val<'a>>,
    #[serde(borrow, default, rename = "E")]
    pub event_time: Option<Val<'a>>,
    #[serde(borrow, default, rename = "T")]
    pub transact_time: Option<Val<'a>>,
    #[serde(borrow, default)]
    pub bids: Option<Val<'a>>,
    #[serde(borrow, default)]
    pub asks: Option<Val<'a>>,
    #[serde(borrow, default)]
    pub result: Option<Val<'a>>,
    #[serde(borrow, default)]
    pub id: Option<Val<'a>>,
}
