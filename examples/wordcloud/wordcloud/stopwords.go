package wordcloud

// IsStopWord reports whether w (in lower case) is an English stop word:
// a pronoun, article, auxiliary, conjunction, common preposition or adverb,
// or a fragment of a contraction ("don" from "don't"). Words shorter than
// MinWordLen are not listed, since Frequencies drops them anyway.
func IsStopWord(w string) bool {
	switch w {
	case
		// pronouns and determiners
		"you", "your", "yours", "yourself", "yourselves", "our", "ours", "ourselves",
		"him", "his", "himself", "she", "her", "hers", "herself", "its", "itself",
		"they", "them", "their", "theirs", "themselves", "what", "which", "who", "whom",
		"whose", "this", "that", "these", "those", "the", "all", "any", "both", "each",
		"few", "more", "most", "other", "others", "some", "such", "own", "same", "every",
		"either", "neither", "another", "many", "much", "one", "ones", "anyone",
		"everyone", "someone", "something", "anything", "everything", "nothing",
		// auxiliaries and modals
		"are", "was", "were", "been", "being", "have", "has", "had", "having", "does",
		"did", "doing", "done", "can", "could", "will", "would", "shall", "should", "may",
		"might", "must", "get", "gets", "got",
		// conjunctions and prepositions
		"and", "but", "because", "until", "while", "for", "with", "about", "against",
		"between", "into", "through", "throughout", "during", "before", "after", "above",
		"below", "from", "down", "out", "off", "over", "under", "again", "further",
		"then", "once", "than", "nor", "not", "only", "also", "via", "per", "within",
		"without", "across", "along", "around", "among", "upon", "onto", "toward",
		"towards", "whether", "though", "although", "unless", "since", "yet", "etc",
		// adverbs
		"here", "there", "when", "where", "why", "how", "very", "too", "just", "now",
		"well", "even", "ever", "still", "already", "often", "always", "never", "really",
		"quite", "rather", "like",
		// contraction fragments
		"don", "doesn", "didn", "isn", "aren", "wasn", "weren", "hasn", "haven", "hadn",
		"won", "wouldn", "shouldn", "couldn", "mustn", "needn", "shan", "ain":
		return true
	}
	return false
}
