from llama_index.core.llms import MockLLM
from llama_index.core.schema import Document, IndexNode, MetadataMode

from pipeline.ingest.enrich import ParentEnricher, parse_questions
from pipeline.ingest.reference import ReferenceBuilder
from pipeline.ingest.split import ParentSplitter
from pipeline.models import RefKind

TEXT = " ".join(f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(400))


def make_doc(text: str = TEXT) -> Document:
    return Document(
        id_="/data/doc.txt",
        text=text,
        metadata={"doc_id": "/data/doc.txt", "file_name": "doc.txt", "content_hash": "h", "page_offsets": [0, len(text) // 2]},
        excluded_embed_metadata_keys=["doc_id", "content_hash", "page_offsets"],
        excluded_llm_metadata_keys=["doc_id", "content_hash", "page_offsets"],
    )


class TestParentSplitter:
    def test_ids_are_stable_uuids_and_pages_known(self) -> None:
        a = ParentSplitter(chunk_size=256)([make_doc()])
        b = ParentSplitter(chunk_size=256)([make_doc()])
        assert len(a) > 3
        assert [p.node_id for p in a] == [p.node_id for p in b]
        assert all(len(p.node_id) == 36 for p in a)  # UUID: Qdrant rejects other strings
        assert a[0].metadata["pages"] == [1] and a[-1].metadata["pages"] == [2]
        assert a[0].metadata["readable_id"] == "doc.txt#p0"
        assert "page_offsets" not in a[0].metadata

    def test_changed_text_changes_only_that_parents_id(self) -> None:
        before = ParentSplitter(chunk_size=256)([make_doc()])
        edited = TEXT.replace("Sentence number 399", "Sentence NUMBER 399")
        after = ParentSplitter(chunk_size=256)([make_doc(edited)])
        changed = [i for i, (x, y) in enumerate(zip(before, after)) if x.node_id != y.node_id]
        assert changed == [len(before) - 1]


class TestReferenceBuilder:
    def test_every_ref_points_to_its_parent(self) -> None:
        parents = ParentSplitter(chunk_size=1024)([make_doc()])
        nodes = ReferenceBuilder()(parents)
        refs = [n for n in nodes if isinstance(n, IndexNode)]
        parent_ids = {p.node_id for p in parents}
        assert {r.index_id for r in refs} == parent_ids
        kinds = {r.metadata["kind"] for r in refs}
        assert kinds == {"chunk-128", "chunk-256", "chunk-512", "parent"}
        assert all(r.ref_doc_id == "/data/doc.txt" for r in refs)
        assert len({r.node_id for r in refs}) == len(refs)

    def test_metadata_does_not_reach_embeddings(self) -> None:
        parents = ParentSplitter(chunk_size=1024)([make_doc()])
        ref = next(n for n in ReferenceBuilder()(parents) if isinstance(n, IndexNode))
        assert ref.get_content(metadata_mode=MetadataMode.EMBED) == ref.text


class TestParentEnricher:
    def test_parse_questions_strips_numbering_and_duplicates(self) -> None:
        raw = "1. What is X?\n2) What is X?\n- How big is Y?\nnot a question\nQ3: Why is Z so?"
        assert parse_questions(raw, 5) == ["What is X?", "How big is Y?", "Why is Z so?"]
        assert parse_questions(raw, 2) == ["What is X?", "How big is Y?"]

    def test_adds_summary_and_question_nodes(self) -> None:
        class ScriptedLLM(MockLLM):
            def chat(self, messages, **kwargs):  # type: ignore[no-untyped-def]
                from llama_index.core.llms import ChatMessage, ChatResponse

                prompt = messages[-1].content
                text = "A summary." if "summary" in prompt else "\n".join(f"{i}. Question {i} here?" for i in range(1, 6))
                return ChatResponse(message=ChatMessage(role="assistant", content=text))

        parents = ParentSplitter(chunk_size=1024)([make_doc()])
        out = ParentEnricher(llm_name="scripted", num_questions=5).with_llm(ScriptedLLM())(parents[:1])
        refs = [n for n in out if isinstance(n, IndexNode)]
        assert [r.metadata["kind"] for r in refs] == [RefKind.SUMMARY.value] + [RefKind.QUESTION.value] * 5
        assert refs[0].text == "A summary."
        # the summary lives in its own node: the parent's metadata is unchanged
        assert "summary" not in parents[0].metadata and "A summary." not in parents[0].get_content(metadata_mode=MetadataMode.ALL)


def test_readable_ids_are_shown_as_parents_not_pages() -> None:
    from pipeline.store.layout import display_parent_id

    assert display_parent_id("acl2020.acl-main.447.pdf#p8") == "acl2020.acl-main.447.pdf#parent-8"
    assert display_parent_id("notes#pad.txt#p0") == "notes#pad.txt#parent-0"
    assert display_parent_id("") == "" and display_parent_id("odd#pX") == "odd#pX"
