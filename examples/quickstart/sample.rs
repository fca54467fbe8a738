//! The sample repository the quickstart works on: `textkit`, a tiny Python package with unit tests.

use std::path::Path;

/// `(path, contents)` of every file in the sample repository.
pub(crate) const FILES: &[(&str, &str)] = &[
    (".gitignore", "__pycache__/\n*.pyc\n"),
    (
        "README.md",
        "# textkit\n\nSmall, dependency-free string helpers for Python 3.\n\n## Functions\n\n- `title_case(text)`: capitalize every word.\n- `truncate(text, width)`: cut text to `width` characters, ending with an ellipsis when cut.\n\n## Tests\n\n```sh\npython3 -m unittest discover -s tests -v\n```\n",
    ),
    (
        "textkit/__init__.py",
        "\"\"\"textkit: small string helpers.\"\"\"\n\nfrom .strings import title_case, truncate\n\n__all__ = [\"title_case\", \"truncate\"]\n",
    ),
    (
        "textkit/strings.py",
        "\"\"\"String helpers.\"\"\"\n\n\ndef title_case(text: str) -> str:\n    \"\"\"Capitalize every word.\n\n    >>> title_case(\"hello world\")\n    'Hello World'\n    \"\"\"\n    return \" \".join(word.capitalize() for word in text.split())\n\n\ndef truncate(text: str, width: int) -> str:\n    \"\"\"Cut text to width characters, ending with an ellipsis when cut.\"\"\"\n    if width < 1:\n        raise ValueError(\"width must be at least 1\")\n    return text if len(text) <= width else text[: width - 1] + \"\\u2026\"\n",
    ),
    ("tests/__init__.py", ""),
    (
        "tests/test_strings.py",
        "import unittest\n\nfrom textkit import title_case, truncate\n\n\nclass TitleCaseTest(unittest.TestCase):\n    def test_capitalizes_every_word(self):\n        self.assertEqual(title_case(\"hello big world\"), \"Hello Big World\")\n\n\nclass TruncateTest(unittest.TestCase):\n    def test_short_text_is_kept(self):\n        self.assertEqual(truncate(\"abc\", 5), \"abc\")\n\n    def test_long_text_ends_with_an_ellipsis(self):\n        self.assertEqual(truncate(\"abcdef\", 4), \"abc\\u2026\")\n\n    def test_width_below_one_is_rejected(self):\n        with self.assertRaises(ValueError):\n            truncate(\"abc\", 0)\n\n\nif __name__ == \"__main__\":\n    unittest.main()\n",
    ),
];

/// Writes the sample files under `dir`.
pub(crate) async fn write(dir: &Path) -> std::io::Result<()> {
    for (path, contents) in FILES {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::write(file, contents).await?;
    }
    Ok(())
}
