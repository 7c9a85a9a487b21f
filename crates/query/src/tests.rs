use proptest::prelude::*;

use crate::*;

fn word(t: &str) -> Expr {
    Expr::Word { text: t.into(), case_insensitive: false }
}

fn tag(t: &str) -> Expr {
    Expr::Tag(t.into())
}

fn filter(q: &str) -> Expr {
    parse(q).unwrap_or_else(|e| panic!("{q:?}: {e}")).filter.expect("a filter")
}

#[test]
fn words_phrases_substrings_regexes() {
    assert_eq!(filter("timeout"), word("timeout"));
    assert_eq!(filter(r#""connection reset""#), word("connection reset"));
    assert_eq!(
        filter(r#"i"Connection Reset""#),
        Expr::Word { text: "Connection Reset".into(), case_insensitive: true }
    );
    assert_eq!(filter(r#"~"req-00""#), Expr::Substring { text: "req-00".into(), case_insensitive: false });
    assert_eq!(filter(r#"i~"REQ""#), Expr::Substring { text: "REQ".into(), case_insensitive: true });
    assert_eq!(
        filter(r"/t(ime)?out \d+ms/"),
        Expr::Regex { pattern: r"t(ime)?out \d+ms".into(), case_insensitive: false }
    );
    assert_eq!(filter(r"/a\/b/i"), Expr::Regex { pattern: "a/b".into(), case_insensitive: true });
    assert_eq!(filter(r#""say \"hi\"\n""#), word("say \"hi\"\n"));
    assert_eq!(filter("10.0.0.1:80"), word("10.0.0.1:80"));
    assert_eq!(filter("info"), word("info"));
}

#[test]
fn tags_apps_and_time() {
    assert_eq!(filter("level=ERROR"), tag("level=ERROR"));
    assert_eq!(filter("level!=DEBUG"), Expr::Not(Box::new(tag("level=DEBUG"))));
    assert_eq!(filter(r#"msg="a b""#), tag("msg=a b"));
    assert_eq!(filter("url=a=b"), tag("url=a=b"));
    assert_eq!(filter("tag:canary"), tag("canary"));
    assert_eq!(filter("host=*"), Expr::TagKey("host".into()));
    assert_eq!(filter(r#"level=~"ERR|FATAL""#), Expr::TagRegex { key: "level".into(), pattern: "ERR|FATAL".into() });
    assert_eq!(
        filter(r#"level!~"INFO""#),
        Expr::Not(Box::new(Expr::TagRegex { key: "level".into(), pattern: "INFO".into() }))
    );
    let app = |a: &str| Expr::App(logpipe_model::AppName::parse(a).unwrap());
    assert_eq!(filter("app:hdfs"), app("hdfs"));
    assert_eq!(filter("app:(hdfs OR Spark)"), Expr::Or(vec![app("hdfs"), app("spark")]));
    assert_eq!(filter("app:(hdfs spark)"), Expr::Or(vec![app("hdfs"), app("spark")]));
    assert_eq!(filter("_time:1h"), Expr::TimeLast(3_600_000_000_000));
    assert_eq!(
        filter("_time:[2025-01-01T00:00:00Z, 2025-01-02T00:00:00Z)"),
        Expr::Time { from: Some(1_735_689_600_000_000_000), to: Some(1_735_776_000_000_000_000) }
    );
    assert_eq!(filter("_time:[*, 5)"), Expr::Time { from: None, to: Some(5) });
}

#[test]
fn precedence_not_and_or() {
    // NOT binds tightest, then AND (implicit or written), then OR
    let (a, b, c) = (word("a"), word("b"), word("c"));
    let not = |e: Expr| Expr::Not(Box::new(e));
    assert_eq!(filter("a b OR c"), Expr::Or(vec![Expr::And(vec![a.clone(), b.clone()]), c.clone()]));
    assert_eq!(filter("a AND b or c"), filter("a b OR c"));
    assert_eq!(filter("a (b OR c)"), Expr::And(vec![a.clone(), Expr::Or(vec![b.clone(), c.clone()])]));
    assert_eq!(filter("-a b"), Expr::And(vec![not(a.clone()), b.clone()]));
    assert_eq!(filter("NOT (a OR b)"), not(Expr::Or(vec![a.clone(), b.clone()])));
    assert_eq!(filter("not a"), not(a.clone()));
    assert_eq!(filter("a OR b OR c"), Expr::Or(vec![a.clone(), b.clone(), c.clone()]));
    assert_eq!(filter("((a))"), a);
    assert_eq!(filter(r#""or""#), word("or"));
}

#[test]
fn pipes() {
    let p = parse("error | sort asc | limit 20 | fields _time, message").unwrap();
    assert_eq!(
        p.pipes,
        vec![Pipe::Sort(Order::Asc), Pipe::Limit(20), Pipe::Fields(vec!["_time".into(), "message".into()])]
    );
    assert_eq!(parse("* | count").unwrap(), Plan { filter: None, pipes: vec![Pipe::Count] });
    assert_eq!(parse("| count by (host)").unwrap().pipes, vec![Pipe::CountBy("host".into())]);
    assert_eq!(
        parse("x | histogram 5m by (level)").unwrap().pipes,
        vec![Pipe::Histogram { step: 300_000_000_000, by: Some("level".into()) }]
    );
    assert_eq!(parse("").unwrap(), Plan::default());
}

#[test]
fn errors_name_the_column_and_what_was_expected() {
    let cases: &[(&str, usize, &str)] = &[
        ("a (b", 5, "expected `)`"),
        (r#"a "open"#, 3, "not closed"),
        ("a | sort up", 10, "expected asc or desc"),
        ("a | frobnicate", 5, "expected a pipe"),
        ("/x", 1, "regex is not closed"),
        ("/x/g", 4, "the only flag is `i`"),
        ("app:../x", 5, "invalid app name"),
        ("_time:[2025-01-02T00:00:00Z, 2025-01-01T00:00:00Z)", 8, "after its end"),
        ("_time:soon", 7, "duration"),
        ("a | limit x", 11, "not a number"),
        ("a | count | count", 13, "already in the query"),
        ("a | count | histogram 5m", 13, "only one of"),
        ("a )", 3, "expected `|`"),
        (r#""bad \q""#, 6, "unknown escape"),
        ("~x", 2, "quoted substring"),
        ("level=", 7, "tag value"),
        // found by the `query` fuzz target: key `a!` printed back as `a!=b`, another filter
        ("x a!!=b", 3, "cannot end with `!`"),
        ("tqg:!!~st=h1", 1, "cannot end with `!`"),
    ];
    for &(q, column, needle) in cases {
        let e = parse(q).expect_err(q);
        assert!(e.message.contains(needle), "{q:?}: {e}");
        assert_eq!(e.column, column, "{q:?}: {e}");
    }
    let deep = "(".repeat(100) + "a" + &")".repeat(100);
    assert!(parse(&deep).unwrap_err().message.contains("nested"));
    // a negated tag is a NOT too: it counts toward the depth, so what parses prints back
    // to a query that parses (found by the `query` fuzz target)
    for op in ["!=", "!~"] {
        assert!(parse(&("-".repeat(64) + "a" + op + "b")).unwrap_err().message.contains("nested"), "{op}");
        let ok = parse(&("-".repeat(63) + "a" + op + "b")).unwrap();
        assert_eq!(parse(&ok.to_string()).unwrap(), ok, "{op}");
    }
    // `x y OR z` prints as `(x y) OR z`: the parentheses it gains count as well (found by
    // the `query` fuzz target)
    let not64 = "NOT ".repeat(64);
    assert!(parse(&format!("x {not64} y OR z")).unwrap_err().message.contains("nested"));
    let ok = parse(&format!("x {} y OR z", "NOT ".repeat(63))).unwrap();
    assert_eq!(parse(&ok.to_string()).unwrap(), ok);
    assert!(parse(&format!("x {not64} y")).is_ok(), "without OR, no parentheses are added");
    assert!(parse(&"a ".repeat(40_000)).is_err(), "over the size cap");
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,8}",
        "[A-Za-z0-9 ._:/=!~()|,\"\\\\-]{1,12}",
        Just("or".to_string()),
        Just("NOT".to_string()),
        Just("*".to_string()),
        Just("é ü".to_string()),
    ]
}

fn leaf() -> impl Strategy<Value = Expr> {
    let app = "[a-z][a-z0-9._-]{0,8}".prop_map(|a| Expr::App(logpipe_model::AppName::parse(&a).unwrap()));
    prop_oneof![
        (text(), any::<bool>()).prop_map(|(text, case_insensitive)| Expr::Word { text, case_insensitive }),
        (text(), any::<bool>()).prop_map(|(text, case_insensitive)| Expr::Substring { text, case_insensitive }),
        ("[a-z/\\\\.+*()]{1,8}", any::<bool>())
            // the parser reads `\/` as `/`, so no parsed pattern holds it
            .prop_filter("no escaped slash, no lone final backslash", |(p, _)| !p.contains("\\/") && !p.ends_with('\\'))
            .prop_map(|(pattern, case_insensitive)| Expr::Regex { pattern, case_insensitive }),
        app,
        text().prop_map(Expr::Tag),
        ("[a-z]{1,5}", text()).prop_map(|(k, v)| Expr::Tag(format!("{k}={v}"))),
        "[a-z]{1,5}".prop_map(Expr::TagKey),
        ("[a-z]{1,5}", text()).prop_map(|(key, pattern)| Expr::TagRegex { key, pattern }),
        (proptest::option::of(0i64..1i64 << 62), proptest::option::of(0i64..1i64 << 62)).prop_map(|(a, b)| {
            let (from, to) = match (a, b) {
                (Some(a), Some(b)) => (Some(a.min(b)), Some(a.max(b))),
                x => x,
            };
            Expr::Time { from, to }
        }),
        (1i64..1i64 << 50).prop_map(Expr::TimeLast),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Expr::and),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Expr::or),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

fn pipe_list() -> impl Strategy<Value = Vec<Pipe>> {
    (
        proptest::option::of(0usize..100_000),
        proptest::option::of(prop_oneof![Just(Order::Asc), Just(Order::Desc)]),
        proptest::option::of(prop_oneof![
            Just(Pipe::Count),
            text().prop_map(Pipe::CountBy),
            (1_000_000i64..1i64 << 45, proptest::option::of(text()))
                .prop_map(|(step, by)| Pipe::Histogram { step, by }),
        ]),
        proptest::option::of(proptest::collection::vec(text(), 1..4).prop_map(Pipe::Fields)),
    )
        .prop_map(|(limit, sort, agg, fields)| {
            let mut v = Vec::new();
            v.extend(sort.map(Pipe::Sort));
            v.extend(agg);
            v.extend(limit.map(Pipe::Limit));
            v.extend(fields);
            v
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    /// Printing a plan and parsing the text gives the same plan back.
    #[test]
    fn print_then_parse_is_the_same_plan(filter in proptest::option::of(expr()), pipes in pipe_list()) {
        let plan = Plan { filter, pipes };
        let text = plan.to_string();
        let back = parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(back, plan, "{}", text);
    }

    /// Nothing a user can type makes the parser panic.
    #[test]
    fn any_text_parses_or_errors(q in "[ -~é]{0,60}") {
        let _ = parse(&q);
    }
}
