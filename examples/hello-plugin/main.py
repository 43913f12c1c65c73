def main() -> None:
    print("hello from a signed plugin")


if __name__ == "__main__":
    main()
