"""Answer a query from retrieved parents with the configured LLM (LlamaIndex ``RetrieverQueryEngine``)."""

from __future__ import annotations

from llama_index.core import PromptTemplate
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.llms import LLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.response_synthesizers import ResponseMode, get_response_synthesizer

# Short and plain: long instructions make 135M–1.5B models ramble or repeat the context.
QA_PROMPT = PromptTemplate(
    "Context:\n{context_str}\n\n"
    "Answer the question using only the context above, in 1 to 4 sentences. "
    "If the context does not contain the answer, say so.\n"
    "Question: {query_str}\nAnswer:"
)


def build_query_engine(retriever: BaseRetriever, llm: LLM, streaming: bool = False) -> RetrieverQueryEngine:
    synthesizer = get_response_synthesizer(
        llm=llm, response_mode=ResponseMode.COMPACT, text_qa_template=QA_PROMPT, streaming=streaming
    )
    return RetrieverQueryEngine(retriever=retriever, response_synthesizer=synthesizer)
