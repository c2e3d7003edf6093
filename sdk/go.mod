module github.com/segd/segd/sdk

go 1.24
