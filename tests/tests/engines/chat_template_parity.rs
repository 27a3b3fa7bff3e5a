//! The model's own chat template, rendered with minijinja, equals transformers' jinja2
//! rendering (one turn, multi-turn, with and without system message, with and without the
//! generation prompt); ChatML is the fallback for files without a template.

use flywheel_tests::{fixture, real_model};
use shared::{ChatMessage, ChatTemplate, GgufModel, ModelText};

fn cases() -> Vec<serde_json::Value> {
    fixture("chat_templates.json")["cases"]
        .as_array()
        .unwrap()
        .clone()
}

/// Renders every fixture conversation with `template` and compares with the fixture's `key`.
fn assert_renders_like_fixture(template: &ChatTemplate, key: &str) {
    let cases = cases();
    assert_eq!(cases.len(), 8);
    for case in cases {
        let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
        let rendered = template
            .render(&messages, case["add_generation_prompt"].as_bool().unwrap())
            .unwrap();
        assert_eq!(
            rendered,
            case[key].as_str().unwrap(),
            "case {}",
            case["name"]
        );
    }
}

#[test]
fn model_template_matches_transformers_rendering() {
    let gguf = GgufModel::open(&real_model()).unwrap();
    let text = ModelText::from_gguf(&gguf).unwrap();
    assert!(!text.template.is_chatml_fallback);
    assert_renders_like_fixture(&text.template, "model_template");
}

#[test]
fn chatml_fallback_matches_jinja2_rendering() {
    let template = ChatTemplate::new(None, "<|endoftext|>", "<|im_end|>").unwrap();
    assert!(template.is_chatml_fallback);
    assert_renders_like_fixture(&template, "chatml");
}

#[test]
fn template_errors_are_reported_not_panics() {
    let broken = ChatTemplate::new(Some("{% for m in messages %}{{ m.content }"), "", "");
    assert!(broken.unwrap_err().to_string().contains("does not compile"));

    let raising = ChatTemplate::new(
        Some("{% if messages[0].role != 'user' %}{{ raise_exception('first message must be from the user') }}{% endif %}"),
        "",
        "",
    )
    .unwrap();
    let error = raising
        .render(&[ChatMessage::assistant("hi")], true)
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("first message must be from the user"),
        "{error}"
    );
}

#[test]
fn tojson_renders_like_python_json_dumps() {
    let template = ChatTemplate::new(
        Some("{{ {'name': 'f', 'args': [1, 'é<b>'], 'ok': true} | tojson }}|{{ [1, 2] | tojson(indent=2) }}"),
        "",
        "",
    )
    .unwrap();
    assert_eq!(
        template.render(&[], false).unwrap(),
        "{\"name\": \"f\", \"args\": [1, \"é<b>\"], \"ok\": true}|[\n  1,\n  2\n]"
    );
}
