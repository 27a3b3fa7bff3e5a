//! Model and user text as Markdown — fenced code blocks, headings, bullet and numbered lists,
//! paragraphs, inline `code` and **bold** — built only from text nodes, so raw HTML in a
//! message (`<script>`, `<img onerror=…>`) shows as the characters it is and never runs.
//! Re-rendered as a reply streams in; an unclosed fence is a code block until it closes.

use leptos::prelude::*;

/// A block-level piece of a message.
#[derive(Debug, Clone, PartialEq)]
enum Block {
    Code { language: String, code: String },
    Heading { level: usize, text: String },
    Bullet(String),
    Numbered { number: String, text: String },
    Paragraph(String),
}

fn blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut paragraph: Vec<&str> = Vec::new();
    let mut lines = text.lines();
    let flush = |paragraph: &mut Vec<&str>, blocks: &mut Vec<Block>| {
        if !paragraph.is_empty() {
            blocks.push(Block::Paragraph(paragraph.join("\n")));
            paragraph.clear();
        }
    };
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if let Some(language) = trimmed.strip_prefix("```") {
            flush(&mut paragraph, &mut blocks);
            let mut code = Vec::new();
            for line in lines.by_ref() {
                if line.trim_start().starts_with("```") {
                    break;
                }
                code.push(line);
            }
            blocks.push(Block::Code {
                language: language.trim().to_string(),
                code: code.join("\n"),
            });
        } else if trimmed.is_empty() {
            flush(&mut paragraph, &mut blocks);
        } else if let Some((level, heading)) = heading(trimmed) {
            flush(&mut paragraph, &mut blocks);
            blocks.push(Block::Heading {
                level,
                text: heading.to_string(),
            });
        } else if let Some(item) = trimmed
            .strip_prefix("- ")
            .or_else(|| trimmed.strip_prefix("* "))
        {
            flush(&mut paragraph, &mut blocks);
            blocks.push(Block::Bullet(item.to_string()));
        } else if let Some((number, item)) = numbered(trimmed) {
            flush(&mut paragraph, &mut blocks);
            blocks.push(Block::Numbered {
                number: number.to_string(),
                text: item.to_string(),
            });
        } else {
            paragraph.push(line);
        }
    }
    flush(&mut paragraph, &mut blocks);
    blocks
}

fn heading(line: &str) -> Option<(usize, &str)> {
    let level = line.chars().take_while(|&c| c == '#').count();
    let rest = line[level..].strip_prefix(' ')?;
    (1..=6).contains(&level).then_some((level, rest))
}

fn numbered(line: &str) -> Option<(&str, &str)> {
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    let rest = line[digits..].strip_prefix(". ")?;
    (digits > 0).then_some((&line[..digits], rest))
}

/// Inline code spans (between backticks) and **bold**, everything else plain text.
fn inline(text: &str) -> impl IntoView + use<> {
    text.split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                view! { <code>{part.to_string()}</code> }.into_any()
            } else {
                part.split("**")
                    .enumerate()
                    .map(|(j, piece)| {
                        if j % 2 == 1 {
                            view! { <strong>{piece.to_string()}</strong> }.into_any()
                        } else {
                            piece.to_string().into_any()
                        }
                    })
                    .collect_view()
                    .into_any()
            }
        })
        .collect_view()
}

fn render(text: &str) -> impl IntoView + use<> {
    blocks(text)
        .into_iter()
        .map(|block| match block {
            Block::Code { language, code } => view! {
                <pre data-language=language><code>{code}</code></pre>
            }
            .into_any(),
            Block::Heading { level, text } => {
                let text = inline(&text);
                match level {
                    1 => view! { <h3>{text}</h3> }.into_any(),
                    2 => view! { <h4>{text}</h4> }.into_any(),
                    _ => view! { <h5>{text}</h5> }.into_any(),
                }
            }
            Block::Bullet(text) => view! { <ul><li>{inline(&text)}</li></ul> }.into_any(),
            Block::Numbered { number, text } => view! {
                <ol start=number><li>{inline(&text)}</li></ol>
            }
            .into_any(),
            Block::Paragraph(text) => view! { <p>{inline(&text)}</p> }.into_any(),
        })
        .collect_view()
}

/// `text` rendered as Markdown, updating as the signal changes.
#[component]
pub fn Markdown(#[prop(into)] text: Signal<String>) -> impl IntoView {
    move || render(&text.get())
}
