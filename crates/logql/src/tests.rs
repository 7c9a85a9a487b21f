use crate::*;

#[test]
fn regexes_nested_past_the_limit_are_refused() {
    // `w++…+` nests one repetition per `+` (found by the `logql` fuzz target: 200 of them
    // overflowed a debug build's stack while compiling)
    let deep = format!("w{}", "+".repeat(200));
    for q in [format!(r#"{{a="b"}} |~ "{deep}""#), format!(r#"{{a=~"{deep}"}}"#)] {
        let e = parse(&q).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("nest"), "{q}: {e}");
    }
    assert!(parse(&format!(r#"{{a="b"}} |~ "w{}""#, "+".repeat(20))).is_ok());
}

#[test]
fn parses_and_prints_back_the_same_query() {
    for q in [
        r#"{app="web"}"#,
        r#"{app="web", level=~"err.*", env!="dev", x!~"a|b"} |= "timeout" != "retry" |~ "t(ime)?out" !~ `\d+`"#,
        r#"{app="web"} | json | status >= 500 and method="GET" or level="error" | line_format "{{.method}} {{ .path }}""#,
        r#"{app="web"} | logfmt | duration > 250ms"#,
        r#"count_over_time({app="web"}[5m])"#,
        r#"sum by (level) (count_over_time({app="web"} |= "x" [1m]))"#,
        r#"sum(rate({app="web"}[30s])) without (host)"#,
        r#"topk(3, sum by (host) (bytes_over_time({app="web"}[1h])))"#,
        "vector(1)+vector(1)",
        r#"sum(count_over_time({app="a"}[1m])) / 2 > 1"#,
        "Inf - -inf * 1e300 * 1e300 < 4",
        "(1 + 2) * (3 - (4 - 5)) / (6 / 7)",
        "1 > 2 > 3 == (4 < 5)",
        r#"{app="web"} | json | (a="1" or b="2") and c="3""#,
        r#"{app="web"} | json | a="1" and (b="2" and c="3") or (d="4" or e="5")"#,
    ] {
        let a = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        let printed = a.to_string();
        let b = parse(&printed).unwrap_or_else(|e| panic!("{printed}: {e}"));
        assert_eq!(a, b, "{q} → {printed}");
    }
    // by before or after the arguments is the same query
    assert_eq!(parse(r#"sum by (a) (rate({x="y"}[1m]))"#).unwrap(), parse(r#"sum(rate({x="y"}[1m])) by (a)"#).unwrap());
    // * binds tighter than +
    let Query::Metric(MetricExpr::Binary { op: BinOp::Add, .. }) = parse("1 + 2 * 3").unwrap() else {
        panic!("precedence")
    };
    // printed with the parentheses it needs and no more: a chain of 40 operators (one
    // level deep) prints as one level, not forty (found by the `logql` fuzz target)
    let chain = vec!["1"; 41].join(" > ");
    assert_eq!(parse(&chain).unwrap().to_string(), chain);
    assert_eq!(parse("((1 + 2)) * 3").unwrap().to_string(), "(1 + 2) * 3");
}

#[test]
fn refuses_bad_queries_with_a_position() {
    for (q, at) in [
        ("{app=\"web\"", 10),
        ("{}", 2),
        ("{app=web}", 5),
        (r#"{app=~"("}"#, 6),
        (r#"count_over_time({app="a"})"#, 25),
        (r#"{a="b"} | x > "s""#, 14),
        (r#"{a="b"} | line_format "{{ upper .x }}""#, 22),
        ("sum(", 4),
    ] {
        let e = parse(q).expect_err(q);
        assert_eq!(e.at, at, "{q}: {e}");
    }
    let deep = format!("{}1{}", "(".repeat(100), ")".repeat(100));
    assert!(parse(&deep).unwrap_err().msg.contains("nested"));
}

#[test]
fn pipeline_extracts_filters_and_formats() {
    let Query::Log(l) = parse(
            r#"{app="web"} |= "GET" | json | status >= 500 | req_path=~"/api/.*" | line_format "{{.status}} {{.req_path}}""#,
        )
        .unwrap() else {
            panic!()
        };
    let p = Pipeline::new(&l.stages).unwrap();
    let mut labels = Labels::from([("app".to_string(), "web".to_string())]);
    let out = p.run(r#"{"method":"GET","status":503,"req":{"path":"/api/x"}}"#, &mut labels);
    assert_eq!(out.as_deref(), Some("503 /api/x"));
    assert_eq!(labels["method"], "GET");
    let mut labels = Labels::new();
    assert_eq!(p.run(r#"{"method":"GET","status":200,"req":{"path":"/api/x"}}"#, &mut labels), None);
    let mut labels = Labels::new();
    assert_eq!(p.run("GET not json", &mut labels), None, "no status label: the number filter drops it");

    let Query::Log(l) = parse(r#"{a="b"} | logfmt | level="warn", took > 1.5s"#).unwrap() else { panic!() };
    let p = Pipeline::new(&l.stages).unwrap();
    let mut labels = Labels::new();
    assert!(p.run(r#"level=warn took=2s msg="a \"quoted\" one""#, &mut labels).is_some());
    assert_eq!(labels["msg"], "a \"quoted\" one");
    assert!(p.run("level=warn took=1s", &mut Labels::new()).is_none());
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn aggregations_and_binary_operations() {
    let v = vec![
        (labels(&[("app", "a"), ("level", "info")]), 3.0),
        (labels(&[("app", "a"), ("level", "error")]), 1.0),
        (labels(&[("app", "b"), ("level", "info")]), 5.0),
    ];
    let by = Grouping::By(vec!["level".into()]);
    let got = aggregate(AggOp::Sum, None, Some(&by), v.clone());
    assert_eq!(got, vec![(labels(&[("level", "error")]), 1.0), (labels(&[("level", "info")]), 8.0)]);
    assert_eq!(aggregate(AggOp::Count, None, None, v.clone()), vec![(Labels::new(), 3.0)]);
    assert_eq!(aggregate(AggOp::Avg, None, None, v.clone()), vec![(Labels::new(), 3.0)]);
    let top = aggregate(AggOp::Topk, Some(2.0), None, v.clone());
    assert_eq!(top.iter().map(|s| s.1).collect::<Vec<_>>(), [5.0, 3.0]);
    let without = Grouping::Without(vec!["level".into()]);
    let got = aggregate(AggOp::Max, None, Some(&without), v.clone());
    assert_eq!(got, vec![(labels(&[("app", "a")]), 3.0), (labels(&[("app", "b")]), 5.0)]);

    let Val::Vector(two) = binary(
        BinOp::Add,
        Val::Vector(vec![vec![(Labels::new(), 1.0)]]),
        Val::Vector(vec![vec![(Labels::new(), 1.0)]]),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(two, vec![vec![(Labels::new(), 2.0)]]);
    let Val::Vector(over) = binary(BinOp::Gt, Val::Vector(vec![v]), Val::Scalar(2.0)).unwrap() else { panic!() };
    assert_eq!(over[0].iter().map(|s| s.1).collect::<Vec<_>>(), [3.0, 5.0]);
    assert!(matches!(binary(BinOp::Div, Val::Scalar(1.0), Val::Scalar(4.0)).unwrap(), Val::Scalar(x) if x == 0.25));
}

#[test]
fn pushdown_is_exact_or_wider() {
    let Query::Log(l) = parse(r#"{app="web", level="error", env!="dev", host=~"h.*", x="", y=~".*", a_b="1"} |= "GET" !~ "x+" | line_format "{{.level}}" |= "after""#).unwrap() else {
            panic!()
        };
    let got: Vec<String> = pushdown(&l).unwrap().iter().map(|e| e.to_string()).collect();
    // label matchers that also match an absent label (x="", y=~".*") are not pushed down,
    // nor line filters after line_format
    // nor a label whose `_` may stand for another character of a tag key (a_b: a.b?)
    assert_eq!(got.len(), 6, "{got:?}");
    let Query::Log(l) = parse(r#"{app="Not An App!"}"#).unwrap() else { panic!() };
    assert!(pushdown(&l).is_none(), "an app name that cannot exist matches nothing");
}
